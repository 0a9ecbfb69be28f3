"""TFDS names: offline failure is fast and points at the offline forms; conversion works."""
import time

import numpy as np
import pytest

from rolekd_tf.data import datasets as dsmod
from rolekd_tf.data import load_full, load_splits
from rolekd_tf.errors import DataError


def _offline_error(call):
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        call()
    elapsed = time.monotonic() - t0
    msg = str(e.value)
    assert "\n" not in msg
    assert "imagefolder:" in msg and "embedded:digits" in msg
    assert elapsed < 30, f"offline failure took {elapsed:.1f} s"
    return msg


def test_cifar10_offline_fails_fast_with_alternatives(tmp_path):
    """On this machine (no internet) the real code path must fail fast and helpfully."""
    if dsmod._network_problem() is None:
        pytest.skip("network reachable: this test is about the offline failure")
    msg = _offline_error(lambda: load_splits("cifar10", train_size=100, val_size=None,
                                             cache_dir=str(tmp_path / "tfds")))
    assert "'cifar10' could not be downloaded by TFDS" in msg


def test_unreachable_mirror_fails_fast_anywhere(tmp_path, monkeypatch):
    """Same path with a host that can never resolve, so it runs with or without internet."""
    monkeypatch.setenv("ROLEKD_NET_PROBE_HOST", "tfds-mirror.invalid")
    msg = _offline_error(lambda: load_full("svhn_cropped", cache_dir=str(tmp_path / "tfds")))
    assert "tfds-mirror.invalid" in msg and "svhn_cropped" in msg


def test_tfds_load_failure_is_wrapped(tmp_path, monkeypatch):
    """If the probe passes but TFDS's download fails, the error is still one DataError line."""
    import tensorflow_datasets as tfds

    def boom(*a, **k):
        raise ConnectionError("HTTPSConnectionPool(host='x'): Max retries exceeded\nmore lines")

    monkeypatch.setenv("ROLEKD_NET_PROBE_HOST", "none")
    monkeypatch.setattr(tfds, "load", boom)
    msg = _offline_error(lambda: load_full("cifar10", cache_dir=str(tmp_path / "tfds")))
    assert "ConnectionError" in msg


def test_unknown_tfds_name_suggests(tmp_path):
    with pytest.raises(DataError) as e:
        load_full("cifar11", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert "'cifar11'" in msg and "'cifar10'" in msg and "imagefolder:PATH" in msg


def test_non_classification_tfds_set(tmp_path):
    with pytest.raises(DataError, match="not an image-classification set"):
        load_full("glue", cache_dir=str(tmp_path))


def test_conversion_with_mocked_tfds(tmp_path, monkeypatch):
    """Real tfds.load call path on TFDS's own mock data (offline): arrays, info, constants."""
    import tensorflow_datasets as tfds

    monkeypatch.setenv("ROLEKD_NET_PROBE_HOST", "none")
    with tfds.testing.mock_data(num_examples=24):
        x, y, info = load_full("cifar10", cache_dir=str(tmp_path))
        gx, gy, ginfo = load_full("mnist", cache_dir=str(tmp_path))
    assert x.shape == (24, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int32
    assert info.num_classes == 10 and info.mean == (0.4914, 0.4822, 0.4465)
    assert info.std == (0.2470, 0.2435, 0.2616)
    assert gx.shape == (24, 28, 28, 3)                       # grey replicated to RGB
    assert np.array_equal(gx[..., 0], gx[..., 2])
    f = gx.astype(np.float64) / 255
    np.testing.assert_allclose(ginfo.mean, f.mean(axis=(0, 1, 2)), atol=1e-9)  # measured
