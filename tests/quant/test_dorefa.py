import numpy as np
import pytest
import tensorflow as tf

from rolekd_tf.errors import ModelError
from rolekd_tf.quant import quantize_activation, quantize_k, quantize_weight, validate_bits
from tests.quant import _numpy_ref as ref

BITS = [1, 2, 3, 4, 8]


def _grad(fn, x, g):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = fn(x)
        loss = tf.reduce_sum(y * g)
    return y.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_quantize_k_forward_and_ste(k):
    rng = np.random.default_rng(k)
    x = rng.uniform(0, 1, size=(257,)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    y, dx = _grad(lambda v: quantize_k(v, k), x, g)
    np.testing.assert_allclose(y, ref.q_k(x.astype(np.float64), k), atol=1e-6)
    np.testing.assert_allclose(dx, g, atol=0)  # straight-through


@pytest.mark.parametrize("k", BITS + [32])
def test_weight_forward_matches_numpy(k):
    rng = np.random.default_rng(100 + k)
    w = (rng.normal(size=(3, 3, 4, 8)) * 0.3).astype(np.float32)
    got = quantize_weight(tf.constant(w), k).numpy()
    np.testing.assert_allclose(got, ref.weight_forward(w, k), atol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_weight_levels_are_odd_multiples(k):
    n = 2**k - 1
    rng = np.random.default_rng(k)
    w = rng.normal(size=(4000,)).astype(np.float32)
    q = quantize_weight(tf.constant(w), k).numpy() * n
    np.testing.assert_allclose(q, np.round(q), atol=1e-4)
    ints = set(np.round(q).astype(int).tolist())
    assert ints <= set(range(-n, n + 1, 2))  # odd multiples of 1/n, never 0
    if k <= 4:
        assert ints == set(range(-n, n + 1, 2))


def test_weight_levels_k2_exact():
    w = tf.constant(np.linspace(-2, 2, 101, dtype=np.float32))
    vals = np.unique(np.round(quantize_weight(w, 2).numpy(), 6))
    np.testing.assert_allclose(vals, [-1, -1 / 3, 1 / 3, 1], atol=1e-6)


def test_weight_k1_is_sign_times_mean_abs():
    w = np.array([-0.5, 0.25, 0.0, 1.25], np.float32)
    got = quantize_weight(tf.constant(w), 1).numpy()
    np.testing.assert_allclose(got, [-0.5, 0.5, 0.5, 0.5])


@pytest.mark.parametrize("k", BITS + [32])
def test_weight_gradient_matches_numpy(k):
    rng = np.random.default_rng(200 + k)
    w = (rng.normal(size=(3, 3, 4, 6)) * 0.5).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)
    _, dw = _grad(lambda v: quantize_weight(v, k), w, g)
    np.testing.assert_allclose(dw, ref.weight_grad(w, k, g), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_weight_gradient_flows_through_max_to_argmax(k):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(50,)).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)
    _, dw = _grad(lambda v: quantize_weight(v, k), w, g)
    with_max = ref.weight_grad(w, k, g)
    without_max = ref.weight_grad(w, k, g, through_max=False)
    j = int(np.argmax(np.abs(w)))
    # The oracle distinguishes the two rules only at the arg-max element, and clearly so.
    assert abs(with_max[j] - without_max[j]) > 1e-2
    np.testing.assert_allclose(np.delete(with_max, j), np.delete(without_max, j))
    np.testing.assert_allclose(dw[j], with_max[j], rtol=1e-4, atol=1e-5)
    assert abs(dw[j] - without_max[j]) > 1e-2


@pytest.mark.parametrize("k", BITS + [32])
def test_activation_forward_and_gradient(k):
    rng = np.random.default_rng(300 + k)
    x = rng.uniform(-0.5, 1.5, size=(400,)).astype(np.float32)
    x[:4] = [0.0, 1.0, -1e-3, 1.001]  # boundaries: inside (inclusive) / just outside
    g = rng.normal(size=x.shape).astype(np.float32)
    y, dx = _grad(lambda v: quantize_activation(v, k), x, g)
    np.testing.assert_allclose(y, ref.activation_forward(x, k), atol=1e-6)
    np.testing.assert_allclose(dx, ref.activation_grad(x, k, g), atol=1e-6)
    if k < 32:
        n = 2**k - 1
        np.testing.assert_allclose(y * n, np.round(y * n), atol=1e-4)
        assert y.min() >= 0 and y.max() <= 1
        assert dx[0] == g[0] and dx[1] == g[1] and dx[2] == 0 and dx[3] == 0


@pytest.mark.parametrize("k", [1, 2, 4])
def test_quantisers_under_xla(k):
    rng = np.random.default_rng(k)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    g = rng.normal(size=w.shape).astype(np.float32)
    v = tf.Variable(w)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(quantize_weight(v, k) * g) + tf.reduce_sum(
                quantize_activation(v, k) * g)
        return tape.gradient(loss, v)

    expect = ref.weight_grad(w, k, g) + ref.activation_grad(w, k, g)
    np.testing.assert_allclose(step().numpy(), expect, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 8, 32])
def test_validate_bits_accepts(bits):
    assert validate_bits(bits, "w_bits") == bits


@pytest.mark.parametrize("bits", [0, 9, 16, 33, -1, 2.5, "4", True, None])
def test_validate_bits_rejects(bits):
    with pytest.raises(ModelError, match="allowed: 1..8 or 32"):
        validate_bits(bits, "a_bits")


def test_validate_bits_message():
    with pytest.raises(ModelError) as e:
        validate_bits(33, "w_bits")
    assert str(e.value) == "w_bits=33 is out of range; allowed: 1..8 or 32"
