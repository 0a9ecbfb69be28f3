"""Each batched op vs the per-image PIL reference (tests/augment/pil_reference.py) on real
CIFAR-10 images.

Tolerance: all 15 ops are required to be bit-exact (L∞ = 0). That is achievable because
every PIL path here is integer or reproducible: warps use PIL's own 16.16 fixed-point
nearest-neighbour index arithmetic (so no pixel-centre / rounding convention differs), the
enhancers replicate Image.blend's float32 math and truncation, the SMOOTH filter sums are exact
integers in float32, and AutoContrast's LUT is computed in float64 like Python does.
"""
import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.augment import ops
from tests.augment import pil_reference as ref

FILL = np.array([0.4914, 0.4822, 0.4465]) * 255.0
LEVELS = (0, 3, 6, 9)


@pytest.fixture(scope="module")
def images(cifar10_tar):
    x = ref.read_tar_images(cifar10_tar, 40)
    # edge cases for the histogram ops: a flat image and a low-contrast one
    flat = np.full((1,) + x.shape[1:], 77, np.uint8)
    low = (x[:1] // 8 + 100).astype(np.uint8)
    return np.concatenate([x, flat, low])


def _run(name, x, levels, seed=(3, 4)):
    b = x.shape[0]
    fn = ops.OP_BY_NAME[name]
    out = fn(tf.constant(x, tf.float32), tf.constant(levels, tf.int32), tf.ones([b], tf.bool),
             fill=FILL, seed=tf.constant(seed, tf.int32)).numpy()
    signs = ops.random_signs(tf.constant(seed, tf.int32), b).numpy()
    r, c = [t.numpy() for t in ops.cutout_centres(tf.constant(seed, tf.int32), b, 32, 32)]
    expected = np.stack([
        ref.pil_op(name, x[i], int(levels[i]), fill=FILL, sign=int(signs[i]),
                   centre=(int(r[i]), int(c[i]))) for i in range(b)])
    return out, expected


def test_op_names_pinned():
    assert ops.OP_NAMES == ref.OP_NAMES
    assert len(ops.OP_NAMES) == 15 and len(ops.OPS) == 15


def test_level_tables_match_reference_table():
    assert ops.ROTATE_DEGREES == tuple(3 * L for L in range(10))
    assert ops.TRANSLATE_PIXELS == tuple(range(10))
    assert ops.POSTERIZE_BITS == (4, 4, 4, 3, 3, 2, 2, 2, 1, 1)
    assert ops.SOLARIZE_THRESHOLD == tuple(256 - int(25.6 * L) for L in range(10))
    assert ops.CUTOUT_SIZE == tuple(2 * L for L in range(10))
    np.testing.assert_allclose(ops.SHEAR_COEFF, [0.03 * L for L in range(10)], atol=1e-12)
    np.testing.assert_allclose(ops.ENHANCE_FACTOR, [0.1 + 0.18 * L for L in range(10)],
                               atol=1e-12)


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_op_matches_pil_exactly(images, name):
    """Every level 0..9 at once: sample i gets level LEVELS-cycled, plus all levels in a 2nd pass."""
    b = images.shape[0]
    for levels in (np.resize(np.array(LEVELS), b), np.arange(b) % 10):
        out, expected = _run(name, images, levels)
        assert out.dtype == np.float32
        diff = np.abs(out - expected.astype(np.float32))
        bad = np.argwhere(diff.max(axis=(1, 2, 3)) > 0).ravel()
        assert diff.max() == 0, (f"{name}: samples {bad[:5]} (levels {levels[bad[:5]]}) differ "
                                 f"from PIL, max |Δ|={diff.max()}")


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_mask_false_untouched_and_integer_output(images, name):
    x = tf.constant(images[:8], tf.float32)
    mask = tf.constant([True, False] * 4)
    out = ops.OP_BY_NAME[name](x, tf.fill([8], 7), mask, fill=FILL, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(out[1::2], images[1:8:2])
    assert np.all(out == np.round(out)) and out.min() >= 0 and out.max() <= 255


# Posterize at L=0 keeps 4 bits and the enhancers use factor 0.1: not identities in PBA either.
@pytest.mark.parametrize("name", ["Rotate", "TranslateX", "TranslateY", "ShearX", "ShearY",
                                  "Cutout", "Solarize"])
def test_level_zero_is_identity_where_pba_is(images, name):
    out, _ = _run(name, images, np.zeros(images.shape[0], np.int32))
    np.testing.assert_array_equal(out, images)


def test_per_sample_magnitudes(images):
    """The same image at levels 0..9 in one batch gives 10 different Brightness results, each
    equal to the single-level call."""
    x = np.repeat(images[:1], 10, axis=0)
    levels = np.arange(10)
    out, expected = _run("Brightness", x, levels)
    np.testing.assert_array_equal(out, expected)
    assert len({o.tobytes() for o in out}) == 10


def test_random_ops_deterministic_under_seed(images):
    x = tf.constant(images[:16], tf.float32)
    lv = tf.fill([16], 9)
    m = tf.ones([16], tf.bool)
    for name in ("Rotate", "TranslateX", "Cutout"):
        fn = ops.OP_BY_NAME[name]
        a = fn(x, lv, m, fill=FILL, seed=[5, 6]).numpy()
        b = fn(x, lv, m, fill=FILL, seed=[5, 6]).numpy()
        c = fn(x, lv, m, fill=FILL, seed=[7, 8]).numpy()
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    signs = ops.random_signs(tf.constant([5, 6]), 4096).numpy()
    assert 0.45 < (signs < 0).mean() < 0.55


@pytest.mark.parametrize("method", ["partition", "dense"])
def test_dispatcher_per_sample_ops(images, method):
    """apply_op_by_index == applying each sample's op to it alone (deterministic ops only, so
    random draws do not enter), incl. masked samples and empty partitions."""
    det = [k for k, n in enumerate(ops.OP_NAMES) if n not in ops.SIGNED_OPS and n != "Cutout"]
    rng = np.random.default_rng(0)
    b = images.shape[0]
    op_idx = rng.choice(det, size=b)
    levels = rng.integers(0, 10, size=b)
    mask = rng.random(b) < 0.8
    out = ops.apply_op_by_index(tf.constant(images, tf.float32), tf.constant(op_idx, tf.int32),
                                tf.constant(levels, tf.int32), tf.constant(mask),
                                fill=FILL, seed=[1, 1], method=method).numpy()
    for i in range(b):
        exp = (ref.pil_op(ops.OP_NAMES[op_idx[i]], images[i], int(levels[i]), fill=FILL)
               if mask[i] else images[i])
        np.testing.assert_array_equal(out[i], exp, err_msg=f"sample {i} op {op_idx[i]}")


def test_dispatcher_scalar_index_and_tf_function(images):
    x = tf.constant(images[:8], tf.float32)

    @tf.function
    def f(k):
        return ops.apply_op_by_index(x, k, tf.fill([8], 4), tf.ones([8], tf.bool), fill=FILL,
                                     seed=tf.constant([1, 2]))

    inv = f(tf.constant(ops.OP_NAMES.index("Invert"))).numpy()
    np.testing.assert_array_equal(inv, 255 - images[:8].astype(np.float32))
    eq = f(tf.constant(ops.OP_NAMES.index("Equalize"))).numpy()
    np.testing.assert_array_equal(eq, np.stack([ref.pil_op("Equalize", im, 4, fill=FILL)
                                                for im in images[:8]]))


def test_fused_dispatcher_all_ops_match_pil(images):
    """The default (fused) dispatcher with all 15 ops mixed in one batch, random ones included:
    sample i's warp sign / Cutout centre are random_signs(seed, B)[i] / cutout_centres(...)[i]."""
    b = images.shape[0]
    rng = np.random.default_rng(7)
    op_idx = np.arange(b) % ops.NUM_OPS
    levels = rng.integers(0, 10, size=b)
    mask = rng.random(b) < 0.9
    seed = tf.constant([9, 10], tf.int32)
    out = ops.apply_op_by_index(tf.constant(images, tf.float32), tf.constant(op_idx, tf.int32),
                                tf.constant(levels, tf.int32), tf.constant(mask),
                                fill=FILL, seed=seed).numpy()
    signs = ops.random_signs(seed, b).numpy()
    r, c = [t.numpy() for t in ops.cutout_centres(seed, b, 32, 32)]
    for i in range(b):
        exp = (ref.pil_op(ops.OP_NAMES[op_idx[i]], images[i], int(levels[i]), fill=FILL,
                          sign=int(signs[i]), centre=(int(r[i]), int(c[i])))
               if mask[i] else images[i])
        np.testing.assert_array_equal(out[i], exp, err_msg=f"sample {i} op {op_idx[i]}")
