"""rolekd_tf.data — one entry point returning datasets + metadata.

``load_splits(dataset, train_size=, val_size=, holdout_size=, seed=, cache_dir=)`` → :class:`Splits`
(uint8 NHWC images, int32 labels, :class:`DatasetInfo`). ``dataset`` is ``embedded:digits``,
a TFDS name (``cifar10`` …) or ``imagefolder:PATH``; see :func:`available_datasets`.
"""
from rolekd_tf.data.info import DatasetInfo, Splits
from rolekd_tf.data.splits import split_indices
from rolekd_tf.data.datasets import available_datasets, load_full, load_splits

__all__ = ["DatasetInfo", "Splits", "load_splits", "load_full", "split_indices",
           "available_datasets"]
