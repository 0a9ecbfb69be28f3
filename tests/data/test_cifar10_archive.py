"""The shared 50,000-image CIFAR-10 JPEG archive (env ROLEKD_CIFAR10_TAR).

Uses the persistent cache (env ROLEKD_CACHE_DIR, else ~/.cache/rolekd_tf) on purpose: the
first run extracts and decodes once (about a minute on 2 busy cores), later runs read the
cached .npz in about 2 s.
"""
import numpy as np
import pytest

from rolekd_tf.data import load_full, load_splits

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


@pytest.fixture(scope="module")
def cifar10(cifar10_tar):
    return load_full(f"imagefolder:{cifar10_tar}")


def test_full_archive(cifar10):
    x, y, info = cifar10
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int32
    assert info.num_classes == 10 and info.class_names == CIFAR10_CLASSES
    assert np.bincount(y).tolist() == [5000] * 10
    np.testing.assert_allclose(info.mean, (0.491, 0.481, 0.443), atol=0.01)
    np.testing.assert_allclose(info.std, (0.246, 0.244, 0.262), atol=0.01)
    # Not a degenerate decode: images differ and span the range.
    assert x.min() == 0 and x.max() == 255
    assert not np.array_equal(x[0], x[1])


def test_reduced_cifar10_splits(cifar10_tar, cifar10):
    # PBA's reduced CIFAR-10: 4,000 train, the rest validation; plus a fixed holdout.
    s = load_splits(f"imagefolder:{cifar10_tar}", train_size=4000, val_size=None,
                    holdout_size=1000, seed=0)
    assert s.x_train.shape == (4000, 32, 32, 3) and len(s.y_val) == 45000
    assert np.bincount(s.y_train).tolist() == [400] * 10
    assert np.bincount(s.y_holdout).tolist() == [100] * 10
    s1 = load_splits(f"imagefolder:{cifar10_tar}", train_size=4000, val_size=None,
                     holdout_size=1000, seed=1)
    np.testing.assert_array_equal(s.x_holdout, s1.x_holdout)
    assert not np.array_equal(s.x_train, s1.x_train)
