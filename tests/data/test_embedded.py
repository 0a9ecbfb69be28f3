"""embedded:digits — real scikit-learn digits, 32x32x3 uint8, measured mean/std."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from rolekd_tf.data import DatasetInfo, Splits, load_full, load_splits
from rolekd_tf.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_full("embedded:digits")


def test_shapes_labels_and_info(digits):
    x, y, info = digits
    ref = load_digits()
    assert x.shape == (1797, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, ref.target)
    assert isinstance(info, DatasetInfo)
    assert info.num_classes == 10 and info.class_names == [str(i) for i in range(10)]
    assert info.image_shape == (32, 32, 3)
    assert info.name == "embedded:digits"


def test_pixels_are_the_upscaled_digits(digits):
    x, _, _ = digits
    ref = load_digits().images * (255.0 / 16.0)                       # (N, 8, 8)
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
    assert x.max() >= 250 and x.min() == 0
    # Independent bilinear upsampling (half-pixel centres, edges clamped) in NumPy.
    w = np.zeros((32, 8))
    for i in range(32):
        src = min(max((i + 0.5) * 8 / 32 - 0.5, 0.0), 7.0)
        i0 = int(np.floor(src))
        f = src - i0
        w[i, i0] += 1 - f
        w[i, min(i0 + 1, 7)] += f
    up = np.einsum("ij,njk,lk->nil", w, ref, w)
    assert np.abs(x[..., 0].astype(np.float64) - up).max() <= 1.0


def test_mean_std_measured(digits):
    x, _, info = digits
    f = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(info.mean, f.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(info.std, f.std(axis=(0, 1, 2)), atol=1e-9)
    assert all(s > 0 for s in info.std)


def test_alias_and_splits():
    s = load_splits("embedded", train_size=500, val_size=200, holdout_size=100, seed=1)
    assert isinstance(s, Splits)
    assert s.x_train.shape == (500, 32, 32, 3) and s.y_train.shape == (500,)
    assert s.x_val.shape[0] == 200 and s.x_holdout.shape[0] == 100
    assert s.y_val.dtype == np.int32 and s.x_holdout.dtype == np.uint8
    counts = np.bincount(s.y_train, minlength=10)
    assert counts.min() >= 48 and counts.max() <= 52
    # Images and labels stay paired: each train image equals the full-set image of its index.
    x, y, _ = load_full("embedded:digits")
    s2 = load_splits("embedded:digits", train_size=500, val_size=200, holdout_size=100, seed=1)
    np.testing.assert_array_equal(s.x_train, s2.x_train)
    for img, lab in zip(s.x_train[:20], s.y_train[:20]):
        hits = np.flatnonzero((x == img).all(axis=(1, 2, 3)))
        assert lab in y[hits]


def test_too_many_requested():
    with pytest.raises(DataError, match="1797"):
        load_splits("embedded:digits", train_size=1700, val_size=200)


@pytest.mark.parametrize("bad", ["embedded:cifar", "nonsense dataset!", "", "/definitely/not/here"])
def test_unknown_forms_list_accepted(bad):
    with pytest.raises(DataError) as e:
        load_full(bad)
    msg = str(e.value)
    assert "\n" not in msg
    assert "embedded:digits" in msg


def test_digits_have_no_test_split():
    s = load_splits("embedded:digits", train_size=100, val_size=50, seed=0)
    assert s.test_split is None and s.x_test.shape == (0, 32, 32, 3) and s.y_test.shape == (0,)
    with pytest.raises(DataError) as e:
        load_splits("embedded:digits", train_size=100, val_size=50, seed=0, test_split="test")
    assert "\n" not in str(e.value) and "'test'" in str(e.value)
