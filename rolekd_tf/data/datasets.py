"""Dataset sources behind one entry point: ``load_full`` / ``load_splits``.

Accepted ``dataset`` strings (see :func:`available_datasets`):

* ``embedded:digits`` (alias ``embedded``): scikit-learn's bundled 8x8 handwritten digits
  (1797 images, 10 classes), scaled 0..16 → 0..255 and resized bilinearly to 32x32, grey
  replicated to 3 channels. Offline, real data. mean/std measured on the whole set.
* a TFDS name (``cifar10``, ``cifar100``, ``svhn_cropped``, ``name/config``, ``name:1.2.3``;
  also ``tfds:NAME``): ``tfds.load(name, split="train", as_supervised=True, download=True)``
  into ``cache_dir`` (else TFDS's default data dir). mean/std: docs/METHOD.md §1 constants for
  cifar10/cifar100, measured otherwise. When the data is not prepared yet and the network is
  unreachable, the load fails within seconds with a DataError that names the offline forms
  (TFDS itself would retry its download for over 3 minutes).
* ``imagefolder:PATH``: see :mod:`rolekd_tf.data.imagefolder`.

Test split (``load_splits(test_split=...)``, config ``data.test_split``): the dataset's OWN test
data, never cut from its training data. ``None`` = the dataset's test split if it has one (TFDS
``test``; an image folder's ``test/`` beside ``train/``; ``embedded:digits`` has none); a name
(``test``, ``validation``, …) = that split, a one-line DataError if it does not exist;
``"none"`` = no test split. Test labels use the training split's class ids (same class names,
checked).
"""
from __future__ import annotations

import difflib
import os
import re
import threading

import numpy as np

from rolekd_tf.errors import DataError
from rolekd_tf.data.info import DatasetInfo, Splits, channel_stats
from rolekd_tf.data.imagefolder import load_imagefolder
from rolekd_tf.data.splits import split_indices

# docs/METHOD.md §1 normalisation constants, [0, 1] units.
REFERENCE_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
EMBEDDED = ("digits",)
DEFAULT_TEST_SPLIT = "test"  #: the split ``test_split=None`` looks for
NO_TEST_SPLIT = "none"  #: ``test_split`` value that turns the test split off
OFFLINE_FORMS = ("'imagefolder:PATH' (a folder or .tar.gz of <split>/<class>/<image>) "
                 "or 'embedded:digits'")
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")
# Host probed before a TFDS download (TFDS's own mirror); override with env
# ROLEKD_NET_PROBE_HOST, or set it to "none" to skip the probe.
_PROBE_HOST = "storage.googleapis.com"
_PROBE_TIMEOUT_S = 5.0


def available_datasets() -> str:
    """One line describing every accepted ``dataset`` form."""
    return ("accepted datasets: 'embedded:digits' (alias 'embedded'; scikit-learn's bundled "
            "digits, offline), a TFDS image-classification name such as 'cifar10', "
            "'cifar100', 'svhn_cropped' (or 'tfds:NAME'; downloaded by TFDS, needs network "
            "the first time), or 'imagefolder:PATH' (a folder or .tar/.tar.gz/.tgz archive of "
            "<split>/<class>/<image>; 'train' is trained on, 'test' is the test split)")


# --------------------------------------------------------------------------- embedded

def _load_digits():
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = d.images.astype(np.float32) * (255.0 / 16.0)      # (1797, 8, 8), 0..255
    out = np.empty((len(imgs), 32, 32), dtype=np.float32)
    for i, im in enumerate(imgs):
        out[i] = np.asarray(Image.fromarray(im, mode="F").resize((32, 32), Image.BILINEAR))
    grey = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    x = np.repeat(grey[..., None], 3, axis=-1)
    y = d.target.astype(np.int32)
    mean, std = channel_stats(x)
    info = DatasetInfo(name="embedded:digits", num_classes=10,
                       class_names=[str(i) for i in range(10)], mean=mean, std=std,
                       image_shape=x.shape[1:])
    return x, y, info


# --------------------------------------------------------------------------- TFDS

def _short(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line`` of an exception, preferring a buried network cause if any."""
    text = str(exc)
    # urllib3/requests wrap the cause in long pool messages; keep the telling part.
    m = re.search(r"Failed to resolve '[^']+'(?: \(\[Errno [^\]]+\] [^)]+\))?|"
                  r"\[Errno [^\]]+\] (?:Connection refused|Network is unreachable)|"
                  r"[Rr]ead timed out|[Cc]onnect(?:ion)? timed out", text)
    lines = text.strip().splitlines()
    msg = m.group(0) if m else (lines[0] if lines else "")
    return f"{type(exc).__name__}: {msg[:limit]}" if msg else type(exc).__name__


def _network_problem() -> str | None:
    """None if the TFDS mirror answers within a few seconds, else a short reason.

    Uses ``requests`` (honours HTTP(S)_PROXY) in a daemon thread so even a hanging DNS
    lookup cannot block longer than the timeout.
    """
    host = os.environ.get("ROLEKD_NET_PROBE_HOST", _PROBE_HOST)
    if host.lower() in ("", "none", "off", "0"):
        return None
    result: list = []

    def probe():
        try:
            import requests
            requests.head(f"https://{host}/", timeout=_PROBE_TIMEOUT_S, allow_redirects=False)
            result.append(None)
        except Exception as exc:  # noqa: BLE001
            result.append(f"no network: cannot reach {host}: {_short(exc, 100)}")

    t = threading.Thread(target=probe, daemon=True, name="rolekd-net-probe")
    t.start()
    t.join(_PROBE_TIMEOUT_S + 1.0)
    if not result:
        return f"no network: {host} did not answer within {_PROBE_TIMEOUT_S:.0f} s"
    return result[0]


def _tfds_error(name: str, reason: str, verb: str = "downloaded") -> DataError:
    return DataError(f"dataset {name!r} could not be {verb} by TFDS ({reason}); "
                     f"offline alternatives: {OFFLINE_FORMS}")


def _tfds_split_names(ds_info) -> list[str]:
    """Split names TFDS knows for a prepared dataset ([] when it cannot tell, e.g. mock data)."""
    try:
        return [str(k) for k in ds_info.splits.keys()]
    except Exception:  # noqa: BLE001
        return []


def _load_tfds(name: str, cache_dir, split: str = "train", required: bool = True):
    """``(x, y, info)`` of one TFDS split. ``split`` other than ``train`` is read after the train
    split (the dataset is then prepared): missing → None, or a DataError when ``required``."""
    try:
        import tensorflow_datasets as tfds
    except Exception as exc:  # noqa: BLE001
        raise _tfds_error(name, f"tensorflow-datasets is not importable: {_short(exc)}",
                          "loaded") from None
    data_dir = str(cache_dir) if cache_dir else None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # noqa: BLE001
        if type(exc).__name__ == "DatasetNotFoundError":
            base = name.split("/")[0].split(":")[0]
            known = tfds.list_builders(with_community_datasets=False)
            close = difflib.get_close_matches(base, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise DataError(f"unknown dataset {name!r}: not a TFDS dataset; {hint}"
                            f"{available_datasets()}") from None
        raise _tfds_error(name, _short(exc), "loaded") from None

    keys = builder.info.supervised_keys
    label_key = keys[1] if keys and len(keys) == 2 and isinstance(keys[1], str) else None
    feature = (builder.info.features[label_key]
               if label_key in builder.info.features.keys() else None)
    if label_key is None or not isinstance(feature, tfds.features.ClassLabel):
        raise DataError(f"TFDS dataset {name!r} is not an image-classification set "
                        f"(supervised keys {keys}); {available_datasets()}")

    prepared = False
    try:
        prepared = bool(builder.is_prepared())
    except Exception:  # noqa: BLE001
        prepared = False
    if not prepared:
        problem = _network_problem()
        if problem:
            raise _tfds_error(name, problem)
    if split != "train":
        known = _tfds_split_names(builder.info)
        if known and split not in known:
            if not required:
                return None
            raise DataError(f"TFDS dataset {name!r} has no split {split!r}; its splits: "
                            f"{', '.join(sorted(known))} (or data.test_split: none)")
    try:
        ds, ds_info = tfds.load(name, split=split, as_supervised=True, data_dir=data_dir,
                                download=True, with_info=True)
    except Exception as exc:  # noqa: BLE001
        if split != "train":  # TFDS could not tell the split names beforehand
            if not required:
                return None
            raise DataError(f"TFDS dataset {name!r} has no readable split {split!r} "
                            f"({_short(exc)}); use another split or data.test_split: none") from None
        raise _tfds_error(name, _short(exc), "loaded" if prepared else "downloaded") from None
    xs, ys = [], []
    try:
        for xb, yb in tfds.as_numpy(ds.batch(4096)):
            xs.append(xb)
            ys.append(yb)
    except Exception as exc:  # noqa: BLE001 - e.g. images of different sizes cannot batch
        raise DataError(f"TFDS dataset {name!r} could not be read into arrays ({_short(exc)}); "
                        "images must share one size") from None
    if not xs:
        raise DataError(f"TFDS dataset {name!r} has an empty {split!r} split")
    x, y = np.concatenate(xs), np.concatenate(ys)
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"TFDS dataset {name!r} images have shape {x.shape[1:]}; need HxWx1 or "
                        "HxWx3 images of one size")
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    y = np.asarray(y).astype(np.int32)
    names = list(ds_info.features[label_key].names)
    base = name.split("/")[0].split(":")[0]
    mean, std = REFERENCE_STATS.get(base) or channel_stats(x)
    info = DatasetInfo(name=name, num_classes=len(names), class_names=names, mean=mean,
                       std=std, image_shape=x.shape[1:])
    return x, y, info


# --------------------------------------------------------------------------- entry points

def load_full(dataset: str, *, cache_dir=None):
    """``(x uint8 NHWC, y int32, DatasetInfo)`` for the whole training split of ``dataset``."""
    if not isinstance(dataset, str) or not dataset.strip():
        raise DataError(f"dataset={dataset!r} is empty; {available_datasets()}")
    spec = dataset.strip()
    kind, _, rest = spec.partition(":")
    if kind == "embedded":
        which = rest or "digits"
        if which not in EMBEDDED:
            raise DataError(f"unknown embedded dataset {which!r}; available: "
                            f"{', '.join('embedded:' + e for e in EMBEDDED)}")
        return _load_digits()
    if kind == "imagefolder":
        x, y, names, mean, std = load_imagefolder(rest, cache_dir=cache_dir)
        info = DatasetInfo(name=spec, num_classes=len(names), class_names=names, mean=mean,
                           std=std, image_shape=x.shape[1:])
        return x, y, info
    if kind == "tfds" and rest:
        spec = rest
    if _TFDS_NAME.match(spec):
        return _load_tfds(spec, cache_dir)
    hint = ""
    if os.path.exists(os.path.expanduser(dataset)):
        hint = f"did you mean 'imagefolder:{dataset}'? "
    raise DataError(f"unknown dataset {dataset!r}; {hint}{available_datasets()}")


def _test_request(test_split) -> tuple[str | None, bool]:
    """``(split name or None, required)`` for a ``test_split`` setting (see the module docstring)."""
    if test_split is None:
        return DEFAULT_TEST_SPLIT, False
    if not isinstance(test_split, str) or not test_split.strip():
        raise DataError(f"test_split={test_split!r} must be a split name, 'none' or None")
    name = test_split.strip()
    if name.lower() == NO_TEST_SPLIT:
        return None, False
    if name == "train":
        raise DataError("test_split='train' is not allowed: the test split must be data the model "
                        "never trains on (leave it unset, name another split, or 'none')")
    return name, True


def load_test(dataset: str, info: DatasetInfo, *, test_split: str | None = None, cache_dir=None):
    """``(x uint8 NHWC, y int32, split name)`` of ``dataset``'s own test split, or None.

    ``test_split``: None = the ``test`` split if the dataset has one, a name = that split (a
    DataError if missing), ``'none'`` = no test split. ``info`` is the training split's
    :class:`DatasetInfo`: test images must have its class names (ids) and image shape.
    """
    split, required = _test_request(test_split)
    if split is None:
        return None
    spec = dataset.strip()
    kind, _, rest = spec.partition(":")
    if kind == "embedded":
        if required:
            raise DataError(f"dataset {spec!r} has no {split!r} split (only its training data); "
                            "leave data.test_split unset or set it to none")
        return None
    if kind == "imagefolder":
        got = load_imagefolder(rest, cache_dir=cache_dir, split=split, required=required)
        if got is None:
            return None
        x, y, names = got[0], got[1], got[2]
    else:
        got = _load_tfds(rest if kind == "tfds" and rest else spec, cache_dir, split=split,
                         required=required)
        if got is None:
            return None
        x, y, names = got[0], got[1], got[2].class_names
    if list(names) != list(info.class_names):
        missing = [c for c in info.class_names if c not in names]
        extra = [c for c in names if c not in info.class_names]
        raise DataError(f"dataset {spec!r}: the {split!r} split's classes differ from the training "
                        f"classes (missing {missing[:5]}, extra {extra[:5]}); both must have the "
                        "same class folders")
    if tuple(x.shape[1:]) != tuple(info.image_shape):
        raise DataError(f"dataset {spec!r}: {split!r} images are {tuple(x.shape[1:])} but training "
                        f"images are {tuple(info.image_shape)}; all must share one size")
    return x, y, split


def load_splits(dataset: str, *, train_size: int | None = None, val_size: int | None = None,
                holdout_size: int = 0, seed: int = 0, cache_dir=None,
                test_split: str | None = None) -> Splits:
    """Load ``dataset`` and cut class-balanced train / val / holdout sets; add its test split.

    The sets are a pure function of ``(dataset, sizes, seed)``; the holdout is fixed
    (independent of ``seed``). Size rules: :func:`rolekd_tf.data.splits.split_indices`.
    ``test_split``: see :func:`load_test` (None = the dataset's own ``test`` split if any).
    """
    x, y, info = load_full(dataset, cache_dir=cache_dir)
    try:
        tr, va, ho = split_indices(y, train_size=train_size, val_size=val_size,
                                   holdout_size=holdout_size, seed=seed)
    except DataError as exc:
        raise DataError(f"dataset {dataset!r}: {exc}") from None
    test = load_test(dataset, info, test_split=test_split, cache_dir=cache_dir)
    xt, yt, tname = test if test is not None else (None, None, None)
    return Splits(x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
                  x_holdout=x[ho], y_holdout=y[ho], info=info, x_test=xt, y_test=yt,
                  test_split=tname)
