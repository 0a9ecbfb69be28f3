import numpy as np
import pytest
import tensorflow as tf
import keras

import rolekd_tf  # noqa: F401  (registers the layers)
from rolekd_tf.errors import ModelError
from rolekd_tf.quant import ActivationQuantizer, DoReFaActivations, DoReFaWeights, QuantConv2D, QuantDense, weight_quantizer
from tests.quant import _numpy_ref as ref


@pytest.mark.parametrize("w_bits", [1, 2, 4, 32])
def test_quant_conv_uses_numpy_quantised_kernel(w_bits):
    rng = np.random.default_rng(w_bits)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    layer = QuantConv2D(5, 3, padding="same", strides=2, kernel_quantizer=weight_quantizer(w_bits))
    layer.build(x.shape)
    kernel = (rng.normal(size=(3, 3, 3, 5)) * 0.4).astype(np.float32)
    bias = rng.normal(size=(5,)).astype(np.float32)
    layer.set_weights([kernel, bias])
    qk = ref.weight_forward(kernel, w_bits).astype(np.float32)
    expect = tf.nn.conv2d(x, qk, strides=2, padding="SAME").numpy() + bias  # bias unquantised
    np.testing.assert_allclose(layer(x).numpy(), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.dorefa_kernel().numpy(), qk, atol=1e-6)
    assert layer.w_bits == w_bits and layer.is_quantized == (w_bits < 32)
    # the latent kernel stays float (unchanged) — only the forward uses the quantised copy
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
    if w_bits < 32:
        raw = tf.nn.conv2d(x, kernel, strides=2, padding="SAME").numpy() + bias
        assert np.abs(raw - expect).max() > 1e-2


@pytest.mark.parametrize("w_bits", [1, 3, 32])
def test_quant_dense_uses_numpy_quantised_kernel(w_bits):
    rng = np.random.default_rng(10 + w_bits)
    x = rng.normal(size=(4, 7)).astype(np.float32)
    layer = QuantDense(3, kernel_quantizer=weight_quantizer(w_bits))
    layer.build(x.shape)
    kernel = rng.normal(size=(7, 3)).astype(np.float32)
    bias = rng.normal(size=(3,)).astype(np.float32)
    layer.set_weights([kernel, bias])
    expect = x @ ref.weight_forward(kernel, w_bits) + bias
    np.testing.assert_allclose(layer(x).numpy(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a_bits", [1, 2, 4, 32])
def test_activation_quantizer_grid(a_bits):
    rng = np.random.default_rng(a_bits)
    x = rng.normal(size=(8, 5, 5, 3)).astype(np.float32)
    y = ActivationQuantizer(DoReFaActivations(a_bits))(x).numpy()
    np.testing.assert_allclose(y, ref.activation_forward(x, a_bits), atol=1e-6)
    if a_bits < 32:
        n = 2**a_bits - 1
        np.testing.assert_allclose(y * n, np.round(y * n), atol=1e-4)
        assert set(np.round(y * n).astype(int).ravel()) <= set(range(n + 1))


def test_bad_bits_rejected_by_layers():
    with pytest.raises(ModelError):
        QuantConv2D(4, 3, kernel_quantizer=DoReFaWeights(0))
    with pytest.raises(ModelError):
        QuantDense(4, kernel_quantizer=DoReFaWeights(33))
    with pytest.raises(ModelError):
        ActivationQuantizer(DoReFaActivations(9))


def test_configs_round_trip():
    for layer in (QuantConv2D(4, 3, kernel_quantizer=DoReFaWeights(2), name="c"),
                  QuantDense(4, kernel_quantizer=DoReFaWeights(4), name="d"),
                  ActivationQuantizer(DoReFaActivations(3), name="a")):
        cfg = layer.get_config()
        clone = type(layer).from_config(cfg)
        assert clone.get_config() == cfg
    ser = keras.saving.serialize_keras_object(QuantConv2D(4, 3, kernel_quantizer=DoReFaWeights(2)))
    assert ser["registered_name"] == "rolekd_tf>QuantConv2D"


def test_gradient_reaches_latent_kernel():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 5, 5, 2)).astype(np.float32))
    layer = QuantConv2D(3, 3, kernel_quantizer=DoReFaWeights(2), use_bias=False)
    layer.build(x.shape)
    g = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) * g)
    dk = tape.gradient(loss, layer.kernel).numpy()
    # dL/dW_q by autodiff of the conv with a constant kernel, then the NumPy DoReFa backward
    qk = tf.Variable(ref.weight_forward(layer.kernel.numpy(), 2).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.conv2d(x, qk, 1, "VALID") * g)
    dq = tape.gradient(loss, qk).numpy()
    np.testing.assert_allclose(dk, ref.weight_grad(layer.kernel.numpy(), 2, dq), rtol=1e-4,
                               atol=1e-5)
