"""Layer helpers shared by the model builders.

Every layer gets an explicit, bit-width-independent name (``stage2_block1_conv1`` …) so two builds
of one architecture with different ``w_bits``/``a_bits`` have identical layer names and weight
shapes (needed by :func:`rolekd_tf.models.copy_trainable_weights`). Convolutions and dense layers
are always :class:`~rolekd_tf.quant.QuantConv2D` / :class:`~rolekd_tf.quant.QuantDense` (``w_bits=32``
for the full-precision first conv and last dense), and the ReLUs that become quantisers at low bit
width are always :class:`~rolekd_tf.quant.ActivationQuantizer` (a ReLU at ``a_bits=32``).
"""
from __future__ import annotations

import keras

from rolekd_tf.quant import ActivationQuantizer, DoReFaActivations, QuantConv2D, QuantDense, weight_quantizer
from rolekd_tf.quant.quantizers import Quantizer

#: BatchNormalization settings of the role-kd code (docs/METHOD.md §4); used by every model
#: (:func:`rolekd_tf.models.build_model` then sets the requested momentum on every BN layer).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def conv(x, filters: int, kernel_size: int, stride: int, name: str, w_bits: int,
         padding: str = "same", use_bias: bool = False, kernel_quantizer: Quantizer | None = None):
    """A :class:`QuantConv2D` (He-normal init); ``kernel_quantizer`` (e.g. an ``Int8Grid``)
    replaces the ``w_bits`` one."""
    return QuantConv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=use_bias,
        kernel_initializer="he_normal", kernel_quantizer=kernel_quantizer or weight_quantizer(w_bits), name=name,
    )(x)


def dense(x, units: int, name: str, w_bits: int, use_bias: bool = True, kernel_quantizer: Quantizer | None = None):
    """A :class:`QuantDense`; ``kernel_quantizer`` replaces the ``w_bits`` one."""
    return QuantDense(units, use_bias=use_bias, kernel_quantizer=kernel_quantizer or weight_quantizer(w_bits),
                      name=name)(x)


def bn(x, name: str):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def set_bn_momentum(model: keras.Model, momentum: float) -> None:
    """Give every BatchNormalization layer of ``model`` the moving-statistics decay ``momentum``
    (read by the layer at each training step, so setting it before training is the same as
    building with it)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


def act_q(x, a_bits: int, name: str):
    """A ReLU that becomes a DoReFa activation quantiser when ``a_bits < 32``."""
    return ActivationQuantizer(DoReFaActivations(a_bits), name=name)(x)


def relu(x, name: str):
    """A ReLU that always stays full precision."""
    return keras.layers.ReLU(name=name)(x)


def basic_convs(x, filters: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    """The residual branch of a pre-activation / pyramidal basic block after its entry BN:
    ``conv3×3 (stride) → BN → act → conv3×3`` (layers ``<name>_conv1``, ``_bn2``, ``_mid_aq``,
    ``_conv2``)."""
    y = conv(x, filters, 3, stride, f"{name}_conv1", w_bits)
    y = bn(y, f"{name}_bn2")
    y = act_q(y, a_bits, f"{name}_mid_aq")
    return conv(y, filters, 3, 1, f"{name}_conv2", w_bits)


def bottleneck_convs(x, planes: int, out_ch: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    """The residual branch of a pre-activation / pyramidal bottleneck block after its entry BN:
    ``conv1×1 → BN → act → conv3×3 (stride) → BN → act → conv1×1 (out_ch)`` (layers
    ``<name>_conv1``, ``_bn2``, ``_mid1_aq``, ``_conv2``, ``_bn3``, ``_mid2_aq``, ``_conv3``)."""
    y = conv(x, planes, 1, 1, f"{name}_conv1", w_bits)
    y = bn(y, f"{name}_bn2")
    y = act_q(y, a_bits, f"{name}_mid1_aq")
    y = conv(y, planes, 3, stride, f"{name}_conv2", w_bits)
    y = bn(y, f"{name}_bn3")
    y = act_q(y, a_bits, f"{name}_mid2_aq")
    return conv(y, out_ch, 1, 1, f"{name}_conv3", w_bits)


def tap(x, index: int):
    """Mark a KD feature tap: an identity layer named ``tap_<index>`` on the main path."""
    return keras.layers.Identity(name=f"tap_{index}")(x)


def head(x, num_classes: int, use_bias: bool = True, kernel_quantizer: Quantizer | None = None):
    """Global average pool + full-precision dense ``logits`` (no softmax); ``kernel_quantizer``:
    e.g. an ``Int8Grid`` (the ``int8.tail`` variant)."""
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return dense(x, num_classes, "logits", w_bits=32, use_bias=use_bias, kernel_quantizer=kernel_quantizer)
