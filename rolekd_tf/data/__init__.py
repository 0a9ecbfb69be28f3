"""rolekd_tf.data — one entry point returning datasets + metadata.

``load_splits(dataset, train_size=, val_size=, holdout_size=, seed=, cache_dir=, test_split=)`` →
:class:`Splits` (uint8 NHWC images, int32 labels, :class:`DatasetInfo`; train / val / holdout cut
from the training data, plus the dataset's own test split when it has one). ``dataset`` is ``embedded:digits``,
a TFDS name (``cifar10`` …) or ``imagefolder:PATH``; see :func:`available_datasets`.
"""
from rolekd_tf.data.info import DatasetInfo, Splits
from rolekd_tf.data.splits import split_indices
from rolekd_tf.data.datasets import available_datasets, load_full, load_splits, load_test

__all__ = ["DatasetInfo", "Splits", "load_splits", "load_full", "split_indices",
           "available_datasets", "load_test"]
