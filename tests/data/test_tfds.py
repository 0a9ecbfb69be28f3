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


def test_test_split_from_mocked_tfds(tmp_path, monkeypatch):
    """The real tfds.load path reads split 'test' too (TFDS mock data, offline)."""
    import tensorflow_datasets as tfds

    monkeypatch.setenv("ROLEKD_NET_PROBE_HOST", "none")
    calls = []
    real_load = tfds.load
    monkeypatch.setattr(tfds, "load", lambda *a, **k: (calls.append(k.get("split")), real_load(*a, **k))[1])
    with tfds.testing.mock_data(num_examples=20):
        s = load_splits("cifar10", train_size=12, val_size=None, seed=0, cache_dir=str(tmp_path))
        off = load_splits("cifar10", train_size=12, val_size=None, seed=0, cache_dir=str(tmp_path),
                          test_split="none")
    assert calls == ["train", "test", "train"]           # 'none' never asks TFDS for the test split
    assert s.test_split == "test" and s.x_test.shape == (20, 32, 32, 3) and s.x_test.dtype == np.uint8
    assert s.y_test.dtype == np.int32 and s.y_test.min() >= 0 and s.y_test.max() < 10
    assert len(off.x_test) == 0 and off.test_split is None


def test_named_missing_tfds_split_is_one_line_error(tmp_path, monkeypatch):
    """A prepared dataset knows its split names: a missing named split is refused by name."""
    import tensorflow_datasets as tfds

    monkeypatch.setenv("ROLEKD_NET_PROBE_HOST", "none")
    # mock data reports no split names; a prepared cifar10 reports these two
    monkeypatch.setattr(dsmod, "_tfds_split_names", lambda info: ["test", "train"])
    with tfds.testing.mock_data(num_examples=8):
        with pytest.raises(DataError) as e:
            load_splits("cifar10", train_size=4, cache_dir=str(tmp_path), test_split="validation")
        s = load_splits("cifar10", train_size=4, cache_dir=str(tmp_path), test_split="test")
    msg = str(e.value)
    assert "\n" not in msg and "'validation'" in msg and "test, train" in msg
    assert len(s.x_test) == 8
