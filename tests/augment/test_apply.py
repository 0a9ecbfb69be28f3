"""apply_policy (PBA's per-image rule, vectorised) and baseline_augment."""
import math

import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.augment import apply as ap
from rolekd_tf.augment import ops
from tests.augment import pil_reference as ref

FILL = np.array([0.4914, 0.4822, 0.4465]) * 255.0


@pytest.fixture(scope="module")
def images(cifar10_tar):
    return ref.read_tar_images(cifar10_tar, 32)


def _policy(**slots):
    """_policy(Invert=(10, 0), Equalize_B=(5, 3)) → 60 ints."""
    v = np.zeros(60, np.int32)
    for key, (p, lvl) in slots.items():
        name, _, copy = key.partition("_")
        s = ops.OP_NAMES.index(name) + (15 if copy == "B" else 0)
        v[2 * s], v[2 * s + 1] = p, lvl
    return v


def _count_dist(policy, n=20000, seed=(11, 12)):
    _, _, fired = ap.sample_policy_ops(tf.constant(policy), n, tf.constant(seed))
    counts = fired.numpy().sum(axis=1)
    return np.bincount(counts, minlength=3)


def _exact_count_probs(m, p):
    """m non-zero slots all with probability p: fired = min(cap, Binomial(m, p))."""
    binom = [math.comb(m, k) * p ** k * (1 - p) ** (m - k) for k in range(m + 1)]
    out = np.zeros(3)
    for cap, pc in enumerate(ap.COUNT_PROBS):
        for k, pk in enumerate(binom):
            out[min(cap, k)] += pc * pk
    return out


def _chi2_ok(observed, probs):
    """Pearson chi-square, 2 d.o.f.; 13.8 is the 0.1 % critical value (fixed seed → no flake)."""
    n = observed.sum()
    exp = n * np.asarray(probs)
    keep = exp > 0
    chi2 = float((((observed - exp) ** 2)[keep] / exp[keep]).sum())
    assert np.all(observed[~keep] == 0)
    return chi2 < 13.8, chi2


@pytest.mark.parametrize("prob,m", [(10, 30), (5, 30), (5, 2), (3, 3)])
def test_applied_op_count_distribution(prob, m):
    policy = np.zeros(60, np.int32)
    slots = np.random.default_rng(m).choice(30, size=m, replace=False)
    policy[2 * slots] = prob
    policy[2 * slots + 1] = 4
    observed = _count_dist(policy)
    probs = _exact_count_probs(m, prob / 10)
    ok, chi2 = _chi2_ok(observed, probs)
    assert ok, f"counts {observed} vs expected {probs * observed.sum()} (chi2={chi2:.1f})"
    if prob == 10:
        np.testing.assert_allclose(probs, ap.COUNT_PROBS)


def test_walk_order_is_a_uniform_permutation():
    """Two always-firing slots: the first fired op is either one with p = 1/2 each."""
    policy = _policy(Invert=(10, 0), Equalize_B=(10, 0))
    op_idx, _, fired = ap.sample_policy_ops(tf.constant(policy), 20000, tf.constant([3, 9]))
    first = op_idx.numpy()[fired.numpy()[:, 0], 0]
    share = (first == ops.OP_NAMES.index("Invert")).mean()
    assert abs(share - 0.5) < 0.02
    # both fire for cap-2 samples, in the two possible orders
    both = fired.numpy().all(axis=1)
    assert abs(both.mean() - 0.5) < 0.02
    assert set(map(tuple, op_idx.numpy()[both])) == {(5, 11), (11, 5)}


def test_levels_follow_their_slot():
    policy = _policy(Posterize=(10, 3), Posterize_B=(10, 8))
    op_idx, lv, fired = [t.numpy() for t in
                         ap.sample_policy_ops(tf.constant(policy), 4000, tf.constant([1, 2]))]
    assert np.all(op_idx[fired] == ops.OP_NAMES.index("Posterize"))
    assert set(lv[fired].tolist()) == {3, 8}
    assert np.all(lv[fired.all(1)].sum(1) == 11)   # two fired slots are the two copies


def test_apply_policy_matches_pil_sequence(images):
    """With deterministic ops only, apply_policy == PIL applying each sample's drawn ops in
    order (order matters: Solarize∘Invert ≠ Invert∘Solarize)."""
    policy = _policy(Invert=(6, 0), Solarize=(7, 5), Equalize=(5, 0), Posterize_B=(6, 7),
                     AutoContrast_B=(5, 0), Contrast=(5, 8), Color_B=(5, 2), Sharpness=(5, 9))
    seed = tf.constant([21, 22])
    out = ap.apply_policy(tf.constant(images), tf.constant(policy), fill=FILL, seed=seed).numpy()
    s_draw = tf.unstack(tf.random.experimental.stateless_split(seed, 3))[0]
    op_idx, lv, fired = [t.numpy() for t in
                         ap.sample_policy_ops(tf.constant(policy), images.shape[0], s_draw)]
    assert fired[:, 1].sum() > 5
    for i, im in enumerate(images):
        exp = im
        for k in range(2):
            if fired[i, k]:
                exp = ref.pil_op(ops.OP_NAMES[op_idx[i, k]], exp, int(lv[i, k]), fill=FILL)
        np.testing.assert_array_equal(out[i], exp, err_msg=f"sample {i}")


def test_probability_zero_and_level_zero_identity(images):
    x = tf.constant(images, tf.float32)
    zero = np.zeros(60, np.int32)
    zero[1::2] = 9                     # levels set, probabilities 0
    np.testing.assert_array_equal(ap.apply_policy(x, zero, fill=FILL, seed=[1, 2]), images)
    # every op whose level-0 form is PBA's identity, always firing at level 0
    ident = _policy(Rotate=(10, 0), TranslateX=(10, 0), TranslateY_B=(10, 0), ShearX=(10, 0),
                    ShearY_B=(10, 0), Solarize=(10, 0), Cutout_B=(10, 0))
    np.testing.assert_array_equal(ap.apply_policy(x, ident, fill=FILL, seed=[1, 2]), images)


def test_apply_policy_deterministic_and_in_tf_function(images):
    policy = np.zeros(60, np.int32)
    policy[0::2] = 10
    policy[1::2] = 5
    x = tf.constant(images, tf.float32)
    f = tf.function(lambda s: ap.apply_policy(x, tf.constant(policy), fill=FILL, seed=s))
    a, b, c = f(tf.constant([4, 4])), f(tf.constant([4, 4])), f(tf.constant([4, 5]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    a = a.numpy()
    assert a.dtype == np.float32 and np.all(a == np.round(a)) and 0 <= a.min() and a.max() <= 255
    # ~80 % of samples change (cap 0 → untouched)
    changed = np.any(a != images, axis=(1, 2, 3)).mean()
    assert 0.5 < changed <= 1.0
    assert f.experimental_get_tracing_count() == 1


def test_baseline_crop_offsets_and_fill():
    """pad 4 + crop: offsets 0..7 (REFERENCE §1), exposed pixels = mean colour exactly."""
    b = 512
    ramp = (np.arange(32)[:, None] * 32 + np.arange(32)[None, :]).astype(np.float32)  # unique
    x = np.repeat(np.repeat(ramp[None, :, :, None], 3, axis=3), b, axis=0) / 4.0
    out = ap.baseline_augment(tf.constant(x), fill=FILL, flip=False, cutout=0,
                              seed=[7, 7]).numpy()
    offsets = set()
    for o in out:
        inside = np.all(o != FILL.astype(np.float32), axis=-1)
        rows, cols = np.nonzero(inside)
        oy = int(o[rows[0], cols[0], 0] * 4) // 32 - rows[0]     # src row − dst row = oy − 4
        ox = int(o[rows[0], cols[0], 0] * 4) % 32 - cols[0]
        offsets.add((oy + 4, ox + 4))
        exp = np.full((40, 40, 3), FILL, np.float32)
        exp[4:36, 4:36] = x[0]
        np.testing.assert_array_equal(o, exp[oy + 4:oy + 36, ox + 4:ox + 36])
    assert offsets == {(i, j) for i in range(8) for j in range(8)}


def test_baseline_flip_and_cutout(images):
    x = tf.constant(images, tf.float32)
    out = ap.baseline_augment(x, fill=FILL, pad=0, flip=True, cutout=0, seed=[1, 3]).numpy()
    flipped = np.array([np.array_equal(o, im[:, ::-1]) for o, im in zip(out, images)])
    same = np.array([np.array_equal(o, im) for o, im in zip(out, images)])
    assert np.all(flipped | same) and 0.2 < flipped.mean() < 0.8
    out = ap.baseline_augment(x, fill=FILL, pad=0, flip=False, cutout=16, seed=[1, 3]).numpy()
    cut = np.all(out == FILL.astype(np.float32), axis=-1) & np.any(
        images != np.round(FILL).astype(np.uint8), axis=-1)
    area = cut.sum(axis=(1, 2))
    assert np.all(area <= 256) and np.all(area >= 64) and np.any(area == 256)
    np.testing.assert_array_equal(out[~cut], images[~cut].astype(np.float32))


def test_baseline_matches_numpy_with_the_same_draws(images):
    """pad 4 + crop, flip, Cutout 16 (the compiled kernel) == the straightforward per-image
    numpy version (pil_reference.pil_baseline's steps) fed the same random draws."""
    x = images.astype(np.float32)
    b = len(x)
    seed = tf.constant([5, 9])
    out = ap.baseline_augment(tf.constant(x), fill=FILL, seed=seed).numpy()
    s_off, s_flip, s_cut = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    off = tf.random.stateless_uniform([b, 2], seed=s_off, minval=0, maxval=8,
                                      dtype=tf.int32).numpy()
    flip = (tf.random.stateless_uniform([b], seed=s_flip) < 0.5).numpy()
    r, c = [t.numpy() for t in ops.cutout_centres(s_cut, b, 32, 32)]
    f = FILL.astype(np.float32)
    assert 0 < flip.sum() < b
    for i in range(b):
        p = np.empty((40, 40, 3), np.float32)
        p[:] = f
        p[4:36, 4:36] = x[i]
        e = p[off[i, 0]:off[i, 0] + 32, off[i, 1]:off[i, 1] + 32]
        if flip[i]:
            e = e[:, ::-1]
        e = e.copy()
        e[max(0, r[i] - 8):min(32, r[i] + 8), max(0, c[i] - 8):min(32, c[i] + 8)] = f
        np.testing.assert_array_equal(out[i], e, err_msg=f"sample {i}")
