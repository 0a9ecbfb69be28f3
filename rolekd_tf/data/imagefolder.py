"""``imagefolder:PATH`` — images laid out ``<split>/<class>/<image>`` in a folder or archive.

* ``PATH`` is a folder, or a ``.tar`` / ``.tar.gz`` / ``.tgz`` archive, possibly with one
  top-level directory (``cifar10/train/<class>/<n>.jpg``). The ``train`` split folder is used
  (the shallowest folder named ``train`` that holds class subfolders of images); if there is
  none and the root itself (or its single wrapper folder) holds class folders, that is used.
* Other splits (the test split: ``test``, or any name given as ``split=``) are the folder of
  that name BESIDE ``train/`` (``cifar10/test/<class>/<n>.jpg``); a layout without a ``train``
  folder has no other splits. Their class folders must be exactly the training classes (same
  names, hence the same sorted order and ids) and their images the training images' size.
* Class ids are the sorted class-folder names; images are the files directly inside a class
  folder whose extension is an image extension (other files and hidden entries are ignored).
  Symbolic links to class folders and images are followed; a broken link is refused. At least
  two class folders, each with at least one image, are required.
* Every image is decoded exactly to 8-bit RGB or refused with its name and mode
  (:func:`to_rgb8`); all must have one size. EXIF orientation is applied (the model sees what
  an image viewer shows).
* Archives are extracted once into the cache (``cache_dir`` argument, else env
  ``ROLEKD_CACHE_DIR``, else ``~/.cache/rolekd_tf``) under ``imagefolder/<stem>-<key>/``,
  keyed by the archive's resolved path, size and mtime. Members with absolute paths, ``..``,
  links or anything but regular files and folders are refused. Extraction goes to a temporary
  folder that is renamed into place, so an interrupted run never leaves a half tree.
* The decoded arrays (+ class names, measured mean/std and the split name) are cached per split
  as ``decoded.npz`` (train) / ``decoded-<split>.npz`` beside the extraction (folders:
  ``decoded-<fingerprint>.npz`` / ``decoded-<split>-<fingerprint>.npz``, the fingerprint
  covering every image's relative path, size and mtime), written atomically with
  :func:`rolekd_tf.fileio.atomic_path`. A second load reads only the .npz; a cached file of
  another split is never returned (the split name stored inside is checked).
* Concurrent loaders of the same source (e.g. PBT trials) serialise on a lock file, so the
  source is decoded once.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rolekd_tf.errors import DataError
from rolekd_tf.fileio import atomic_path, clean_stale_temporaries
from rolekd_tf.data.info import channel_stats

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_CACHE_FORMAT = 2  # 2: 16-bit samples scaled (not clipped), EXIF orientation applied
_SPLIT_SEARCH_DEPTH = 4
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python < 3.10.12 has no filters


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else env ``ROLEKD_CACHE_DIR``, else ``~/.cache/rolekd_tf``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("ROLEKD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "rolekd_tf"


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _subdirs(d: Path) -> list[Path]:
    """Visible subfolders of ``d``, symbolic links to folders included (followed, not dropped)."""
    try:
        return sorted(Path(e.path) for e in os.scandir(d)
                      if e.is_dir() and not e.name.startswith(".") and e.name != "__MACOSX")
    except OSError as exc:
        raise DataError(f"cannot list folder {d} ({exc.strerror or exc})") from None


def _broken_links(d: Path) -> list[str]:
    """Names of visible entries of ``d`` that are symbolic links to nothing."""
    try:
        return sorted(e.name for e in os.scandir(d)
                      if e.is_symlink() and not e.name.startswith(".") and not os.path.exists(e.path))
    except OSError:
        return []


def _has_image(d: Path) -> bool:
    try:
        with os.scandir(d) as it:
            return any(e.is_file() and _is_image(e.name) for e in it)
    except OSError:
        return False


def _holds_classes(d: Path) -> bool:
    return any(_has_image(c) for c in _subdirs(d))


def find_other_split_dir(root: Path, train_dir: Path, split: str) -> Path | None:
    """The ``split`` folder beside ``train_dir`` inside ``root`` (None if absent, or if
    ``train_dir`` is not a ``train`` folder below ``root``)."""
    if train_dir.name != "train" or train_dir == root:
        # class folders at the root: no split layout, so no other splits (and never look
        # outside the folder the user named)
        return None
    d = train_dir.parent / split
    return d if d.is_dir() and not d.is_symlink() else None


def find_split_dir(root: Path, display: str) -> Path:
    """The ``train`` split folder under ``root`` (see the module docstring)."""
    level = [root]
    for _ in range(_SPLIT_SEARCH_DEPTH + 1):
        nxt = []
        for d in level:
            if d.name == "train" and _holds_classes(d):
                return d
            nxt.extend(_subdirs(d))
        level = nxt
    d = root
    for _ in range(_SPLIT_SEARCH_DEPTH + 1):
        if _holds_classes(d):
            return d
        subs = _subdirs(d)
        if len(subs) != 1:
            break
        d = subs[0]
    raise DataError(f"imagefolder {display} contains no images in the expected layout "
                    "<split>/<class>/<image> (no 'train' folder with class subfolders of "
                    f"{'/'.join(sorted(e.lstrip('.') for e in IMAGE_EXTENSIONS))} files)")


def scan_split(split_dir: Path, display_root: str, base: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names (sorted), image paths (sorted per class) and int32 labels."""
    classes = _subdirs(split_dir)
    broken = _broken_links(split_dir)
    if broken:
        raise DataError(f"imagefolder {display_root}: '{_rel(split_dir / broken[0], base)}' is a "
                        "symbolic link to nothing (a class folder that is gone?); fix or remove it")
    names, files, labels = [], [], []
    for c in classes:
        try:
            imgs = sorted(e.name for e in os.scandir(c) if e.is_file() and _is_image(e.name))
        except OSError as exc:
            raise DataError(f"cannot list class folder {c} ({exc.strerror or exc})") from None
        broken = [n for n in _broken_links(c) if _is_image(n)]
        if broken:
            raise DataError(f"imagefolder {display_root}: image '{_rel(c / broken[0], base)}' is a "
                            "symbolic link to nothing; fix or remove it")
        if not imgs:
            raise DataError(f"imagefolder {display_root}: class folder "
                            f"'{_rel(c, base)}' contains no images")
        label = len(names)
        names.append(c.name)
        files.extend(c / f for f in imgs)
        labels.extend([label] * len(imgs))
    if not names:
        raise DataError(f"imagefolder {display_root}: no class folders in '{_rel(split_dir, base)}'")
    if len(names) < 2:
        raise DataError(f"imagefolder {display_root}: '{_rel(split_dir, base)}' has one class folder "
                        f"({names[0]!r}); a classifier needs at least 2 classes")
    return names, files, np.asarray(labels, dtype=np.int32)


def _rel(p: Path, base: Path) -> str:
    try:
        return p.relative_to(base).as_posix() or "."
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- decoding

class UnsupportedImage(Exception):
    """A readable image that has no exact 8-bit RGB form (the message says why, with its mode)."""


#: JFIF / BT.601 full-range YCbCr → RGB (what JPEG means by YCbCr)
_YCBCR_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
_EXIF_ORIENTATION = 0x0112
_REFUSED_MODES = {
    "F": "32-bit floating-point samples have no defined black and white level",
    "I": "32-bit integer samples have no defined white level",
    "LAB": "CIELab colour needs a colour-managed conversion",
    "HSV": "HSV is not an image-file colour space",
}


def to_rgb8(im) -> np.ndarray:
    """Decode a loaded PIL image to uint8 HxWx3 RGB exactly, or raise :class:`UnsupportedImage`.

    * ``1`` (0/255), ``L``, ``P`` (palette lookup), ``RGB``, ``RGBX``, ``PA``, ``LA``, ``RGBA``,
      ``La``, ``RGBa``: the stored 8-bit values; grey is replicated into R = G = B.
    * Transparency (a straight alpha band, a PNG/GIF ``transparency`` entry) is ignored: every
      pixel keeps the colour stored in the file (as Pillow's ``convert`` and torchvision's
      ImageFolder do). Premultiplied alpha (``La``, ``RGBa``) is accepted only when every pixel
      is opaque (then stored = straight colour); otherwise refused (un-premultiplying is inexact).
    * 16-bit samples (``I;16``/``I;16B``/``I;16L``/``I;16N``, 16-bit PNG/PGM read as ``I``) are
      reduced the way Pillow reduces the same format's 16-bit colour files, so grey and colour
      files of one format agree: PNM (PGM/PPM) rounds to the nearest level,
      ``round(v·255/65535)``; PNG and TIFF keep the high byte, ``v >> 8`` (previously grey
      16-bit files were clipped at 255 instead).
    * ``CMYK``: ``round((255 − C)(255 − K)/255)`` per channel (no colour profile is applied).
    * ``YCbCr``: JFIF full-range BT.601, rounded half up, clipped to 0..255.
    * Refused (no exact 8-bit RGB): ``F``, 32-bit ``I`` (TIFF), ``LAB``, ``HSV``, any other mode.
    """
    mode = im.mode
    if mode in ("La", "RGBa"):
        n = int(np.count_nonzero(np.asarray(im.getchannel("a")) < 255))
        if n:
            raise UnsupportedImage(f"has mode {mode} (premultiplied alpha) with {n} translucent "
                                   "pixel(s); save it with straight alpha (LA/RGBA) or as RGB")
    if mode in ("1", "L", "RGB", "RGBX"):
        return np.asarray(im.convert("RGB"), dtype=np.uint8)  # 0/255, grey replicated, as stored
    if mode in ("P", "PA"):  # palette lookup (entries past the palette's end are black)
        pal = np.zeros((256, 3), np.uint8)
        stored = np.asarray(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)[:256]
        pal[:len(stored)] = stored
        return pal[np.asarray(im.getchannel("P") if mode == "PA" else im, dtype=np.uint8)]
    if mode in ("LA", "La"):
        return np.repeat(np.asarray(im.getchannel("L"), dtype=np.uint8)[..., None], 3, axis=-1)
    if mode in ("RGBA", "RGBa"):  # RGBa here is opaque: premultiplied equals straight
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8)[..., :3])
    if mode in ("I;16", "I;16B", "I;16L", "I;16N") or (mode == "I" and im.format in ("PNG", "PPM")):
        v = np.asarray(im).astype(np.int64)
        if v.min(initial=0) < 0 or v.max(initial=0) > 65535:
            raise UnsupportedImage(f"has mode {mode} with samples outside 0..65535")
        # the reduction Pillow applies to the same format's 16-bit colour files
        g = (v * 510 + 65535) // 131070 if im.format == "PPM" else v >> 8
        return np.repeat(g.astype(np.uint8)[..., None], 3, axis=-1)
    if mode == "CMYK":
        c = np.asarray(im).astype(np.int64)
        k = 255 - c[..., 3:]
        return (((255 - c[..., :3]) * k * 2 + 255) // 510).astype(np.uint8)  # round((255−C)(255−K)/255)
    if mode == "YCbCr":
        ycc = np.asarray(im).astype(np.float64) - np.array([0.0, 128.0, 128.0])
        rgb = np.floor(ycc @ _YCBCR_TO_RGB.T + 0.5)
        return np.clip(rgb, 0, 255).astype(np.uint8)
    why = _REFUSED_MODES.get(mode, "this mode has no exact 8-bit RGB conversion here")
    raise UnsupportedImage(f"has mode {mode} ({why}); convert it to 8-bit RGB first")


def _orient(x: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an HxWxC array: the image as a viewer shows it."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}
    op = ops.get(orientation)
    return x if op is None else np.ascontiguousarray(op(x))


def _decode_one(path: Path) -> np.ndarray:
    """Decode one image file to uint8 HxWx3 RGB (raises on unreadable/truncated files and
    :class:`UnsupportedImage` on images with no exact 8-bit RGB form)."""
    from PIL import Image

    with Image.open(path) as im:
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            raise UnsupportedImage(f"has {frames} frames (an animation or multi-page file); "
                                   "only single images are supported")
        im.load()
        x = to_rgb8(im)
        orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    return _orient(x, orientation if isinstance(orientation, int) else 1)


def decode_images(files: list[Path], display) -> np.ndarray:
    """Decode ``files`` into one uint8 NHWC array (thread pool; PIL releases the GIL).

    ``display(path)`` gives the name shown in errors. Errors name the first bad file in order.
    """

    def work(i_path):
        i, path = i_path
        try:
            return i, _decode_one(path), None
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt image
            return i, None, exc

    first = work((0, files[0]))
    if first[2] is not None:
        _raise_decode(files[0], first[2], display)
    shape = first[1].shape
    x = np.empty((len(files),) + shape, dtype=np.uint8)
    x[0] = first[1]
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for i, arr, exc in pool.map(work, enumerate(files[1:], start=1)):
                if exc is not None:
                    _raise_decode(files[i], exc, display)
                if arr.shape != shape:
                    raise DataError(
                        f"image {display(files[i])} is {arr.shape[1]}x{arr.shape[0]} but "
                        f"{display(files[0])} is {shape[1]}x{shape[0]}; all images must share "
                        "one size")
                x[i] = arr
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # don't decode the rest first
            raise
    return x


def _raise_decode(path: Path, exc: Exception, display) -> None:
    if isinstance(exc, UnsupportedImage):
        raise DataError(f"image {display(path)} {exc}")
    msg = str(exc).splitlines()[0][:160] if str(exc) else ""
    raise DataError(f"cannot decode image {display(path)} ({type(exc).__name__}"
                    f"{': ' + msg if msg else ''}); the file is unreadable, truncated or corrupt")


# --------------------------------------------------------------------------- cache files

@contextlib.contextmanager
def _locked(folder: Path):
    """Exclusive advisory lock on ``folder/.lock``; yields True if it is really held."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
        fh = open(folder / ".lock", "a+")
    except (ImportError, OSError):
        yield False
        return
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            held = True
        except OSError:
            held = False
        yield held
    finally:
        fh.close()  # releases the lock


def _read_npz(path: Path, split: str = "train"):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != _CACHE_FORMAT:
                return None
            # files written before splits were cached separately hold the train split
            if (str(z["split"]) if "split" in z.files else "train") != split:
                return None
            x, y = z["x"], z["y"].astype(np.int32)
            names = [str(s) for s in z["class_names"]]
            mean = tuple(float(v) for v in z["mean"])
            std = tuple(float(v) for v in z["std"])
    except Exception:  # noqa: BLE001 - a damaged cache file is just a cache miss
        return None
    if x.ndim != 4 or x.dtype != np.uint8 or len(x) != len(y):
        return None
    return x, y, names, mean, std


def _write_npz(path: Path, x, y, names, mean, std, split: str = "train") -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, format=np.int64(_CACHE_FORMAT), split=np.asarray(split), x=x, y=y.astype(np.int32),
                     class_names=np.asarray(names, dtype=str),
                     mean=np.asarray(mean, np.float64), std=np.asarray(std, np.float64))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "data"


# --------------------------------------------------------------------------- archives

def _archive_stem(p: Path) -> str:
    n = p.name
    for s in ARCHIVE_SUFFIXES:
        if n.lower().endswith(s):
            return n[: -len(s)]
    return n


def _check_member(m: tarfile.TarInfo, display: str) -> None:
    name = m.name
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise DataError(f"archive {display}: member '{name}' has an absolute path; refused")
    if ".." in norm.split("/"):
        raise DataError(f"archive {display}: member '{name}' escapes the archive with '..'; refused")
    if m.issym() or m.islnk():
        raise DataError(f"archive {display}: member '{name}' is a "
                        f"{'symbolic' if m.issym() else 'hard'} link; links are refused")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"archive {display}: member '{name}' is a device/fifo/special file; "
                        "only regular files and folders are allowed")


def extract_archive(archive: Path, dest: Path, display: str) -> None:
    """Safely extract ``archive`` to ``dest`` (temp folder + rename; ``dest`` must not exist)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-extract-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                for m in tf:
                    _check_member(m, display)
                    if m.isdir():  # keep empty folders: an empty class folder is an error
                        parts = [x for x in m.name.replace("\\", "/").split("/") if x not in ("", ".")]
                        if parts:
                            tmp.joinpath(*parts).mkdir(parents=True, exist_ok=True)
                        continue
                    try:
                        tf.extract(m, tmp, set_attrs=False, filter="data")
                    except TypeError:  # Python without extraction filters
                        tf.extract(m, tmp, set_attrs=False)
        except DataError:
            raise
        except _FILTER_ERROR as exc:
            raise DataError(f"archive {display}: member refused ({exc})") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"archive {display} cannot be read as a tar archive "
                            f"({type(exc).__name__}: {str(exc)[:120]})") from None
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # anything but "another process finished first"
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- entry point

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def load_imagefolder(path: str, *, cache_dir=None, split: str = "train", required: bool = True):
    """Return ``(x uint8 NHWC, y int32, class_names, mean, std)`` of one split (default ``train``).

    ``split`` other than ``train``: the folder of that name beside ``train/``; when it does not
    exist, ``required=False`` returns None and ``required=True`` raises a DataError.
    """
    if not path:
        raise DataError("imagefolder: needs a path, e.g. 'imagefolder:/data/cifar10' "
                        "or 'imagefolder:/data/cifar10.tar.gz'")
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise DataError(f"imagefolder split {split!r} is not a folder name (letters, digits, _ . -)")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"imagefolder path {path} does not exist")
    root = cache_root(cache_dir) / "imagefolder"
    if p.is_file():
        return _load_archive(p, root, path, split, required)
    if p.is_dir():
        return _load_folder(p, root, path, split, required)
    raise DataError(f"imagefolder path {path} is neither a folder nor a tar archive")


def _split_dir(tree: Path, display: str, split: str, required: bool) -> Path | None:
    """The folder of ``split`` in an (extracted) tree; None / DataError when it is missing."""
    train_dir = find_split_dir(tree, display)
    if split == "train":
        return train_dir
    d = find_other_split_dir(tree, train_dir, split)
    if d is None and required:
        where = (f"beside '{_rel(train_dir, tree)}'" if train_dir.name == "train" and train_dir != tree
                 else "(its class folders are not inside a 'train' folder, so it has no other splits)")
        raise DataError(f"imagefolder {display} has no '{split}' split folder {where}; "
                        "use an existing split or data.test_split: none")
    return d


def _decode_split(split_dir: Path, base: Path, display_root: str, display_file):
    names, files, y = scan_split(split_dir, display_root, base)
    x = decode_images(files, display_file)
    mean, std = channel_stats(x)
    return x, y, names, mean, std


def _npz_name(split: str, fingerprint: str | None = None) -> str:
    """Cache file of one split: train keeps the pre-split names, other splits carry theirs."""
    tag = "" if split == "train" else f"-{split}"
    return f"decoded{tag}.npz" if fingerprint is None else f"decoded{tag}-{fingerprint}.npz"


def _load_archive(p: Path, root: Path, display: str, split: str, required: bool):
    if not p.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise DataError(f"imagefolder path {display} is a file but not a .tar/.tar.gz/.tgz archive")
    st = p.stat()
    key = hashlib.sha1(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    base = root / f"{_slug(_archive_stem(p))}-{key}"
    npz = base / _npz_name(split)
    hit = _read_npz(npz, split)
    if hit is not None:
        return hit
    with _locked(base) as held:
        hit = _read_npz(npz, split)  # another process may have finished while we waited
        if hit is not None:
            return hit
        if held:
            clean_stale_temporaries(base)
            for t in base.glob(".tmp-extract-*"):
                shutil.rmtree(t, ignore_errors=True)
        extracted = base / "extracted"
        if not extracted.is_dir():
            extract_archive(p, extracted, display)
        split_dir = _split_dir(extracted, display, split, required)
        if split_dir is None:
            return None
        data = _decode_split(split_dir, extracted, display,
                             lambda f: f"{display}:{_rel(f, extracted)}")
        _write_npz(npz, *data, split=split)
    return data


def _load_folder(p: Path, root: Path, display: str, split: str, required: bool):
    split_dir = _split_dir(p, display, split, required)
    if split_dir is None:
        return None
    names, files, y = scan_split(split_dir, display, p)
    h = hashlib.sha1()
    for f in files:
        st = f.stat()
        h.update(f"{_rel(f, p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    base = root / f"{_slug(p.resolve().name)}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:16]}"
    npz = base / _npz_name(split, h.hexdigest()[:16])
    hit = _read_npz(npz, split)
    if hit is not None:
        return hit
    with _locked(base) as held:
        hit = _read_npz(npz, split)
        if hit is not None:
            return hit
        if held:
            clean_stale_temporaries(base)
            # the folder changed: drop this split's old decodes (never another split's)
            tag = "" if split == "train" else "-" + re.escape(split)
            stale = re.compile(rf"decoded{tag}-[0-9a-f]{{16}}\.npz$")
            for old in base.glob("decoded-*.npz"):
                if stale.match(old.name):
                    old.unlink(missing_ok=True)
        x = decode_images(files, str)
        mean, std = channel_stats(x)
        data = (x, y, names, mean, std)
        _write_npz(npz, *data, split=split)
    return data
