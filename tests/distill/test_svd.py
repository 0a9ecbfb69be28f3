"""Singular-vector machinery: correctness on both Gram routes, zero maps, finite gradients."""
import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.distill import losses as L
from rolekd_tf.distill.svd import guarded_eigh, top_right_singular_vectors


@pytest.mark.parametrize("shape", [(3, 8, 8, 5), (3, 2, 2, 9)])  # HW >= C and HW < C routes
def test_top_vectors_match_numpy_up_to_sign(shape):
    f = np.random.default_rng(0).normal(size=shape).astype("float32")
    v = top_right_singular_vectors(tf.constant(f), 3).numpy()
    x = f.reshape(shape[0], -1, shape[-1]).astype(np.float64)
    for b in range(shape[0]):
        ref = np.linalg.svd(x[b], full_matrices=False)[2][:3].T
        np.testing.assert_allclose(np.abs((v[b] * ref).sum(0)), 1.0, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 4, 4, 6), (2, 1, 2, 6)])
def test_zero_singular_values_give_zero_vectors(shape):
    f = np.zeros(shape, np.float32)
    f[1] = 1.0  # rank-1 constant map
    v = top_right_singular_vectors(tf.constant(f), 4).numpy()
    assert np.all(np.isfinite(v))
    assert np.all(v[0] == 0)
    np.testing.assert_allclose(np.abs(v[1][:, 0]), 1 / np.sqrt(shape[-1]), atol=1e-5)
    assert np.all(v[1][:, 1:] == 0)


def test_guarded_eigh_gradient_equals_tf_when_separated():
    a = np.random.default_rng(1).normal(size=(2, 5, 5))
    a = tf.constant(a @ np.transpose(a, (0, 2, 1)), tf.float64)
    w = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 5)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(a)
        e1, v1 = guarded_eigh(a)
        e2, v2 = tf.linalg.eigh(a)
        y1 = tf.reduce_sum(tf.abs(v1[..., -2:]) * w[..., -2:]) + tf.reduce_sum(e1)
        y2 = tf.reduce_sum(tf.abs(v2[..., -2:]) * w[..., -2:]) + tf.reduce_sum(e2)
    g1, g2 = tape.gradient(y1, a), tape.gradient(y2, a)
    g2 = 0.5 * (g2 + tf.linalg.adjoint(g2))
    np.testing.assert_allclose(g1.numpy(), g2.numpy(), rtol=1e-6, atol=1e-8)


def test_guarded_eigh_gradient_finite_on_near_ties():
    a = tf.constant(np.diag([1.0, 1.0 + 1e-7, 2.0]).astype("float32")[None])
    with tf.GradientTape() as tape:
        tape.watch(a)
        _, v = guarded_eigh(a)
        y = tf.reduce_sum(v * tf.constant(np.arange(9).reshape(1, 3, 3), tf.float32))
    g = tape.gradient(y, a).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).max() < 1e3


def _ii_grad(fs, ft, z):
    s = [tf.Variable(f) for f in fs] + [tf.Variable(z)]
    t = [tf.constant(f) for f in ft] + [tf.constant(z[::-1].copy())]
    ii = L.IIKD([f.shape[-1] for f in fs])
    with tf.GradientTape() as tape:
        out = ii(list(s), t)
    g = tape.gradient(out["kd"], s)
    return out, g


@pytest.mark.parametrize("case", ["constant", "zeros", "batch2", "duplicated"])
def test_ii_gradients_finite_on_degenerate_maps(case):
    rng = np.random.default_rng(3)
    shapes = ((4, 4, 4), (2, 2, 6), (1, 1, 8))
    b = 2 if case == "batch2" else 5
    fs = [np.maximum(rng.normal(size=(b, *s)), 0).astype("float32") for s in shapes]
    ft = [np.maximum(rng.normal(size=(b, *s)), 0).astype("float32") for s in shapes]
    z = rng.normal(size=(b, 5)).astype("float32")
    if case == "constant":
        fs = [np.full_like(f, 0.7) for f in fs]
        ft = [np.full_like(f, 1.3) for f in ft]
        z = np.full_like(z, 0.5)
    elif case == "zeros":
        fs = [np.zeros_like(f) for f in fs]
        ft = [np.zeros_like(f) for f in ft]
        z = np.zeros_like(z)
    elif case == "duplicated":
        fs = [np.repeat(f[:1], b, 0) for f in fs]
        ft = [np.repeat(f[:1], b, 0) for f in ft]
        z = np.repeat(z[:1], b, 0)
    out, g = _ii_grad(fs, ft, z)
    for k, v in out.items():
        assert np.isfinite(v.numpy()), k
    for gi in g:
        if gi is not None:
            assert np.all(np.isfinite(tf.convert_to_tensor(gi).numpy()))
