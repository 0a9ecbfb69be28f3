"""split_indices: exact sizes, disjointness, class balance, determinism, fixed holdout."""
import numpy as np
import pytest

from rolekd_tf.data import split_indices
from rolekd_tf.errors import DataError


def _labels(counts, seed=0):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return np.random.default_rng(seed).permutation(y)   # classes interleaved, as in real data


BALANCED = _labels([500] * 10)
IMBALANCED = _labels([300, 170, 91, 55, 23, 7])


def _check_balanced(y, idx, size, counts):
    """Per-class counts within 1 of size * N_c / N."""
    got = np.bincount(y[idx], minlength=len(counts))
    exact = size * np.asarray(counts) / sum(counts)
    assert got.sum() == size
    assert np.all(np.abs(got - exact) < 1.0 + 1e-9), (got, exact)


@pytest.mark.parametrize("y,counts", [(BALANCED, [500] * 10),
                                      (IMBALANCED, [300, 170, 91, 55, 23, 7])])
@pytest.mark.parametrize("train,val,hold", [(300, 200, 100), (1, 2, 3), (97, 0, 0), (0, 55, 13)])
def test_exact_sizes_disjoint_balanced(y, counts, train, val, hold):
    tr, va, ho = split_indices(y, train_size=train, val_size=val, holdout_size=hold, seed=7)
    assert (len(tr), len(va), len(ho)) == (train, val, hold)
    for a in (tr, va, ho):
        assert a.dtype == np.int64 and np.all(np.diff(a) > 0)        # sorted, no duplicates
        assert a.size == 0 or (a.min() >= 0 and a.max() < len(y))
    assert not (set(tr) & set(va)) and not (set(tr) & set(ho)) and not (set(va) & set(ho))
    _check_balanced(y, tr, train, counts)
    _check_balanced(y, va, val, counts)
    _check_balanced(y, ho, hold, counts)


def test_val_none_takes_the_rest():
    tr, va, ho = split_indices(BALANCED, train_size=4000, val_size=None, holdout_size=200, seed=1)
    assert len(tr) == 4000 and len(ho) == 200 and len(va) == 5000 - 4200
    assert set(tr) | set(va) | set(ho) == set(range(5000))
    _check_balanced(BALANCED, tr, 4000, [500] * 10)


def test_train_none_takes_the_rest():
    tr, va, ho = split_indices(IMBALANCED, train_size=None, val_size=60, holdout_size=0, seed=1)
    assert len(va) == 60 and len(tr) == len(IMBALANCED) - 60 and len(ho) == 0
    _check_balanced(IMBALANCED, va, 60, [300, 170, 91, 55, 23, 7])


def test_both_none_gives_ten_percent_val():
    tr, va, ho = split_indices(BALANCED, train_size=None, val_size=None, holdout_size=1000, seed=0)
    assert len(va) == 400 and len(tr) == 3600 and len(ho) == 1000


def test_everything_used_exactly():
    y = IMBALANCED
    tr, va, ho = split_indices(y, train_size=300, val_size=len(y) - 300 - 50, holdout_size=50, seed=3)
    assert sorted(np.concatenate([tr, va, ho]).tolist()) == list(range(len(y)))


def test_deterministic_for_a_seed():
    a = split_indices(BALANCED, train_size=1000, val_size=500, holdout_size=250, seed=11)
    b = split_indices(BALANCED.copy(), train_size=1000, val_size=500, holdout_size=250, seed=11)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_seeds_change_train_but_never_holdout():
    runs = [split_indices(BALANCED, train_size=1000, val_size=500, holdout_size=250, seed=s)
            for s in range(4)]
    trains = {tuple(r[0]) for r in runs}
    assert len(trains) == 4                                 # every seed draws another train set
    for r in runs[1:]:
        np.testing.assert_array_equal(r[2], runs[0][2])    # same holdout
    # The holdout does not depend on the train/val sizes either.
    other = split_indices(BALANCED, train_size=10, val_size=None, holdout_size=250, seed=99)
    np.testing.assert_array_equal(other[2], runs[0][2])


def test_labels_need_not_be_contiguous():
    y = np.array([7, 7, 3, 3, 3, 3, 9, 9] * 5)
    tr, va, ho = split_indices(y, train_size=16, val_size=8, holdout_size=8, seed=0)
    assert sorted(np.unique(y[tr]).tolist()) == [3, 7, 9]
    assert np.bincount(y[tr], minlength=10)[[3, 7, 9]].tolist() == [8, 4, 4]


@pytest.mark.parametrize("kw,culprit", [
    (dict(train_size=-1, val_size=1, holdout_size=0), "train_size=-1"),
    (dict(train_size=1, val_size=-5, holdout_size=0), "val_size=-5"),
    (dict(train_size=1, val_size=1, holdout_size=-2), "holdout_size=-2"),
    (dict(train_size=1.5, val_size=1, holdout_size=0), "train_size=1.5"),
    (dict(train_size=4000, val_size=900, holdout_size=200), "5100"),
    (dict(train_size=None, val_size=None, holdout_size=5001), "5001"),
])
def test_bad_sizes(kw, culprit):
    with pytest.raises(DataError) as e:
        split_indices(BALANCED, seed=0, **kw)
    assert culprit in str(e.value) and "\n" not in str(e.value)


def test_bad_seed():
    with pytest.raises(DataError, match="seed=-1"):
        split_indices(BALANCED, train_size=1, val_size=1, holdout_size=0, seed=-1)


def test_random_configs_exact_and_disjoint():
    """Fuzz: tiny, skewed classes and sizes up to the total (quota capping paths)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        counts = rng.integers(1, 12, size=rng.integers(1, 6))
        y = _labels(counts, seed=int(rng.integers(1000)))
        n = len(y)
        h = int(rng.integers(0, n + 1))
        t = int(rng.integers(0, n - h + 1))
        v = int(rng.integers(0, n - h - t + 1))
        tr, va, ho = split_indices(y, train_size=t, val_size=v, holdout_size=h, seed=5)
        assert (len(tr), len(va), len(ho)) == (t, v, h)
        assert len(np.unique(np.concatenate([tr, va, ho]))) == t + v + h
        # Holdout quota never deviates from proportional by 1 or more.
        got = np.bincount(y[ho], minlength=len(counts))
        assert np.all(np.abs(got - h * counts / n) < 1 + 1e-9)
