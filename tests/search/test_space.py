"""PBA explore: bounds, resample frequency, perturbation amounts and their distribution."""
import numpy as np
import pytest

from rolekd_tf.errors import ScheduleError
from rolekd_tf.augment.policy import POLICY_LEN, UPPER, check_policy
from rolekd_tf.search.space import explore, initial_policy


def test_upper_bounds_layout():
    assert UPPER.shape == (60,)
    assert all(UPPER[0::2] == 10) and all(UPPER[1::2] == 9)
    assert initial_policy() == [0] * 60


def test_explore_is_seeded_and_in_bounds():
    rng = np.random.default_rng(0)
    pol = [int(v) for v in rng.integers(0, UPPER + 1)]
    a = explore(pol, np.random.default_rng(5))
    b = explore(pol, np.random.default_rng(5))
    assert a == b and len(a) == POLICY_LEN
    for _ in range(300):
        pol = explore(pol, rng)
        arr = np.asarray(pol)
        assert (arr >= 0).all() and (arr <= UPPER).all()
        assert all(isinstance(v, int) for v in pol)


def test_explore_distribution():
    rng = np.random.default_rng(123)
    base = [5 if i % 2 == 0 else 4 for i in range(60)]  # away from the bounds: no clipping
    n = 4000
    resampled, deltas, fresh = [], [], []
    for _ in range(n):
        new, mask, delta = explore(base, rng, return_details=True)
        resampled.append(mask)
        deltas.append(delta[~mask])
        got = np.asarray(new) - np.asarray(base)
        assert (got[~mask] == delta[~mask]).all()  # perturbation applied exactly (no clip here)
        fresh.append(np.asarray(new)[mask & (np.arange(60) % 2 == 0)])
    freq = np.mean(resampled)
    assert abs(freq - 0.2) < 0.006, freq  # 240k Bernoulli(0.2): sd ≈ 0.0008
    d = np.concatenate(deltas)
    assert set(np.unique(d)) == set(range(-3, 4))
    # amount uniform over {0,1,2,3}, fair sign: P(0)=1/4, P(±k)=1/8
    p0 = np.mean(d == 0)
    assert abs(p0 - 0.25) < 0.01
    for k in (1, 2, 3):
        assert abs(np.mean(d == k) - 0.125) < 0.01 and abs(np.mean(d == -k) - 0.125) < 0.01
    # resampled probabilities cover 0..10 uniformly
    f = np.concatenate(fresh)
    counts = np.bincount(f, minlength=11)
    assert counts.min() > 0 and len(counts) == 11
    assert np.allclose(counts / counts.sum(), 1 / 11, atol=0.02)


def test_explore_clips_at_bounds():
    rng = np.random.default_rng(7)
    lo = [0] * 60
    hi = [int(v) for v in UPPER]
    for _ in range(200):
        assert min(explore(lo, rng, resample_p=0.0)) >= 0
        new = np.asarray(explore(hi, rng, resample_p=0.0))
        assert (new <= UPPER).all() and (new >= UPPER - 3).all()


def test_resample_p_extremes():
    rng = np.random.default_rng(1)
    base = [3] * 60
    new, mask, delta = explore(base, rng, resample_p=1.0, return_details=True)
    assert mask.all() and (delta == 0).all()
    new, mask, delta = explore(base, rng, resample_p=0.0, return_details=True)
    assert not mask.any()


def test_check_policy_errors():
    with pytest.raises(ScheduleError, match="has 59 integers, expected 60"):
        check_policy([0] * 59)
    with pytest.raises(ScheduleError, match=r"policy\[1\] \(Rotate copy A level\) = 10 is out of range 0\.\.9"):
        check_policy([0, 10] + [0] * 58)
    with pytest.raises(ScheduleError, match=r"policy\[0\] \(Rotate copy A prob\) = 11 is out of range 0\.\.10"):
        check_policy([11] + [0] * 59)


def test_random_initial_policies_seeded_in_range_and_nonzero():
    from rolekd_tf.search.space import initial_policies

    a = initial_policies("random", 8, seed=3)
    assert a == initial_policies("random", 8, seed=3)           # same seed → same starts
    assert a != initial_policies("random", 8, seed=4)           # other seed → other starts
    assert len({tuple(p) for p in a}) == 8                        # members start apart
    for p in a:
        assert check_policy(p) == p                               # 60 ints within the ranges
        assert any(p[0::2])                                       # some op has a probability > 0
    assert initial_policies("zeros", 3, seed=3) == [[0] * 60] * 3
    with pytest.raises(Exception, match="search.init='uniform'.*zeros, random"):
        initial_policies("uniform", 3, seed=0)


def test_random_initial_policy_is_one_explore_step_from_zeros():
    """Independent expectation of one PBA explore step from 0: with p = 0.2 uniform over the range
    (mean 5 for probabilities, 4.5 for levels), else max(0, ±U{0..3}) (mean 0.5 · 1.5 = 0.75)."""
    from rolekd_tf.search.space import initial_policies

    a = np.asarray(initial_policies("random", 20000, seed=0), dtype=float)
    assert a[:, 0::2].mean() == pytest.approx(0.2 * 5 + 0.8 * 0.75, abs=0.03)
    assert a[:, 1::2].mean() == pytest.approx(0.2 * 4.5 + 0.8 * 0.75, abs=0.03)
    # P(probability slot stays 0) = 0.2 · 1/11 + 0.8 · (1/4 + 3/4 · 1/2)
    assert (a[:, 0::2] == 0).mean() == pytest.approx(0.2 / 11 + 0.8 * (0.25 + 0.375), abs=0.01)
