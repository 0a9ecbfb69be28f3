"""make_train_dataset / make_eval_dataset / PolicyTable."""
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.augment import ops
from rolekd_tf.augment import pipeline as pl
from rolekd_tf.errors import ConfigError, DataError, ScheduleError

INFO = SimpleNamespace(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
N, B = 70, 16                       # 4 steps per epoch, 6 images dropped each epoch
STEPS = N // B


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(N, 32, 32, 3), dtype=np.uint8)
    y = np.arange(N, dtype=np.int32)            # label = index, so batches identify images
    return x, y


def _denorm(images):
    return np.round((images * np.array(INFO.std) + np.array(INFO.mean)) * 255.0)


def _take(ds, n):
    return [(a.numpy(), b.numpy()) for a, b in ds.take(n)]


def _invert_policy():
    v = np.zeros(60, np.int32)
    v[2 * ops.OP_NAMES.index("Invert")] = 10    # copy A only (two copies would cancel)
    return v


def test_shapes_normalisation_and_epoch_shuffle(data):
    x, y = data
    ds = pl.make_train_dataset(x, y, INFO, batch_size=B, seed=0, pad_crop=False, flip=False,
                               cutout=0)
    assert ds.element_spec[0].shape.as_list() == [B, 32, 32, 3]
    batches = _take(ds, 3 * STEPS)
    for imgs, labels in batches:
        assert imgs.dtype == np.float32 and labels.dtype == np.int32
        np.testing.assert_allclose(_denorm(imgs), x[labels], atol=1e-3)
    epochs = [np.concatenate([lb for _, lb in batches[e * STEPS:(e + 1) * STEPS]])
              for e in range(3)]
    for e in epochs:
        assert len(e) == STEPS * B and len(set(e.tolist())) == len(e)   # no repeats in an epoch
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])


def test_deterministic_and_resume_at_start_epoch(data):
    """Same seed → same stream; a pipeline built at start_epoch=1 replays epoch 1 exactly."""
    x, y = data
    table = pl.PolicyTable(4)
    dense = np.zeros(60, np.int32)
    dense[0::2], dense[1::2] = 10, 6
    table.assign_schedule(np.stack([dense] * 4))
    make = lambda seed, start=0: pl.make_train_dataset(  # noqa: E731
        x, y, INFO, batch_size=B, seed=seed, policy_table=table, start_epoch=start)
    ds = make(5)
    a = _take(ds, 2 * STEPS)
    b = _take(ds, 2 * STEPS)                    # a fresh iterator replays the same stream
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    other = pl.make_train_dataset(x, y, INFO, batch_size=B, seed=6)
    assert not np.array_equal(a[0][1], _take(other, 1)[0][1])
    resumed = _take(make(5, start=1), STEPS)
    for (ia, la), (ib, lb) in zip(a[STEPS:], resumed):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)


def test_epoch_policy_selection_and_live_table_updates(data, monkeypatch):
    x, y = data
    traces = []
    real = pl.apply_policy
    monkeypatch.setattr(pl, "apply_policy", lambda *a, **k: traces.append(1) or real(*a, **k))
    table = pl.PolicyTable(3)
    table.set_row(1, _invert_policy())          # epoch 0: nothing; 1: Invert; 2: nothing
    ds = pl.make_train_dataset(x, y, INFO, batch_size=B, seed=1, policy_table=table,
                               pad_crop=False, flip=False, cutout=0)

    def inverted_share(batches):
        flags = []
        for imgs, labels in batches:
            got = _denorm(imgs)
            inv = np.all(got == 255 - x[labels].astype(np.float64), axis=(1, 2, 3))
            same = np.all(got == x[labels], axis=(1, 2, 3))
            assert np.all(inv | same)
            flags.append(inv)
        return np.concatenate(flags).mean()

    batches = _take(ds, 3 * STEPS)
    assert inverted_share(batches[:STEPS]) == 0
    assert 0.6 < inverted_share(batches[STEPS:2 * STEPS]) < 0.97   # cap 0 w.p. 0.2
    assert inverted_share(batches[2 * STEPS:]) == 0
    # Change the variable: the same dataset object (no rebuild, no retrace) follows it.
    table.set_row(0, _invert_policy())
    table.set_row(1, np.zeros(60, np.int32))
    batches = _take(ds, 2 * STEPS)
    assert 0.6 < inverted_share(batches[:STEPS]) < 0.97
    assert inverted_share(batches[STEPS:]) == 0
    assert len(traces) == 1                      # traced once, at dataset construction
    # epochs beyond the table use its last row
    table.set_row(2, _invert_policy())
    late = pl.make_train_dataset(x, y, INFO, batch_size=B, seed=1, policy_table=table,
                                 start_epoch=7, pad_crop=False, flip=False, cutout=0)
    assert inverted_share(_take(late, STEPS)) > 0.6


def test_set_policy_callback_writes_rows():
    table = pl.PolicyTable(5)
    cb = pl.SetPolicyCallback(table, lambda e: np.full(60, e % 11, np.int32), lookahead=1)
    cb.on_train_begin()
    cb.on_epoch_begin(3)
    arr = table.as_array()
    assert np.all(arr[0] == 0) and np.all(arr[1] == 1) and np.all(arr[3] == 3)
    assert np.all(arr[4] == 4) and np.all(arr[2] == 0)


def test_policy_table_validation():
    table = pl.PolicyTable(3)
    table.assign_schedule(np.ones((2, 60), np.int32))
    assert np.all(table.as_array()[2] == 1)
    with pytest.raises(ScheduleError):
        table.assign_schedule(np.ones((4, 60)))
    with pytest.raises(ScheduleError):
        table.set_row(0, np.full(60, 11))
    with pytest.raises(ScheduleError):
        table.set_row(0, np.zeros(59))
    with pytest.raises(ConfigError):
        table.set_row(3, np.zeros(60))
    with pytest.raises(ConfigError):
        pl.PolicyTable(0)


def test_train_dataset_errors(data):
    x, y = data
    with pytest.raises(DataError):
        pl.make_train_dataset(x[:8], y[:8], INFO, batch_size=16, seed=0)
    with pytest.raises(DataError):
        pl.make_train_dataset(x.astype(np.float32), y, INFO, batch_size=16, seed=0)
    with pytest.raises(DataError):
        pl.make_train_dataset(x, y[:5], INFO, batch_size=16, seed=0)


def test_eval_dataset_keeps_partial_batch(data):
    x, y = data
    out = [(a.numpy(), b.numpy()) for a, b in pl.make_eval_dataset(x, y, INFO, batch_size=32)]
    assert [len(b) for _, b in out] == [32, 32, 6]
    imgs = np.concatenate([a for a, _ in out])
    np.testing.assert_allclose(_denorm(imgs), x, atol=1e-3)
    np.testing.assert_array_equal(np.concatenate([b for _, b in out]), y)


def test_full_augmentation_on_real_images(cifar10_tar):
    from tests.augment.pil_reference import read_tar_images

    x = read_tar_images(cifar10_tar, 64)
    table = pl.PolicyTable(1)
    dense = np.zeros(60, np.int32)
    dense[0::2], dense[1::2] = 10, 9
    table.set_row(0, dense)
    ds = pl.make_train_dataset(x, np.zeros(64, np.int32), INFO, batch_size=32, seed=0,
                               policy_table=table)
    for imgs, _ in ds.take(4):
        v = imgs.numpy()
        assert np.isfinite(v).all() and v.shape == (32, 32, 32, 3)
        assert -2.5 < v.min() and v.max() < 2.5
        # padding / Cutout pixels are the mean colour → exactly 0 after normalisation
        assert np.all(v == 0, axis=-1).sum() > 32 * 64
