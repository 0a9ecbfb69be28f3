"""Dataset metadata (:class:`DatasetInfo`), the split container (:class:`Splits`) and
per-channel statistics."""
from __future__ import annotations

import dataclasses

import numpy as np

from rolekd_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the package needs to know about a dataset.

    ``mean``/``std`` are per-channel (R, G, B) in [0, 1] units: models take
    ``(x / 255 - mean) / std``. ``image_shape`` is ``(H, W, 3)``.
    """

    name: str
    num_classes: int
    class_names: list
    mean: tuple
    std: tuple
    image_shape: tuple

    def __post_init__(self):
        names = [str(c) for c in self.class_names]
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        if self.num_classes != len(names) or self.num_classes < 1:
            raise DataError(f"dataset {self.name!r}: num_classes={self.num_classes} does not "
                            f"match the {len(names)} class names")
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std):
            raise DataError(f"dataset {self.name!r}: mean {mean} / std {std} must be 3 values "
                            "each, std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "image_shape", tuple(int(v) for v in self.image_shape))


@dataclasses.dataclass(frozen=True)
class Splits:
    """uint8 NHWC images and int32 labels of the train / val / holdout / test sets, plus info.

    train / val / holdout are cut from the dataset's training data
    (:func:`rolekd_tf.data.splits.split_indices`); ``x_test``/``y_test`` are the dataset's OWN
    test split (TFDS ``test``, an image folder's ``test/``), named by ``test_split``; empty
    arrays (and ``test_split=None``) when the dataset has none or it was turned off.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    info: DatasetInfo
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    test_split: str | None = None

    def __post_init__(self):
        # "no test split" is an empty array shaped like the training images, so code can
        # always do len(splits.x_test) / x_test.shape[1:].
        if self.x_test is None:
            shape = tuple(self.x_train.shape[1:]) or tuple(self.info.image_shape)
            object.__setattr__(self, "x_test", np.zeros((0,) + shape, np.uint8))
        if self.y_test is None:
            object.__setattr__(self, "y_test", np.zeros((0,), np.int32))
        if len(self.x_test) != len(self.y_test):
            raise DataError(f"dataset {self.info.name!r}: {len(self.x_test)} test images but "
                            f"{len(self.y_test)} test labels")
        if not len(self.x_test):
            object.__setattr__(self, "test_split", None)


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Exact per-channel mean/std (population) of uint8 NHWC images, in [0, 1] units.

    Builds a 256-bin histogram per channel chunk by chunk (no float copy of the images),
    then takes the moments of the histogram in float64.
    std is floored at 1/255 (one grey level) so a constant channel cannot give std 0.
    """
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0 or x.dtype != np.uint8:
        raise DataError(f"cannot compute mean/std of images with shape {x.shape} "
                        f"dtype {x.dtype}; need uint8 NHWC RGB")
    hist = np.zeros((3, 256), dtype=np.int64)
    for i in range(0, x.shape[0], chunk):
        block = x[i:i + chunk].reshape(-1, 3)
        for c in range(3):
            hist[c] += np.bincount(block[:, c], minlength=256)
    v = np.arange(256, dtype=np.float64)
    n = hist.sum(axis=1).astype(np.float64)
    mean = (hist * v).sum(axis=1) / n
    var = np.maximum((hist * (v - mean[:, None]) ** 2).sum(axis=1) / n, 0.0)
    # A constant channel would make normalisation divide by zero; floor std at 1 grey level.
    std = np.maximum(np.sqrt(var), 1.0)
    return tuple(float(m) for m in mean / 255.0), tuple(float(s) for s in std / 255.0)
