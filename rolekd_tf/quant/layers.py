"""DoReFa quantisation-aware Keras layers.

* :class:`QuantConv2D` / :class:`QuantDense`: ``keras.layers.Conv2D`` / ``keras.layers.Dense`` with
  a ``w_bits`` argument. The layer stores a float *latent* kernel (``layer.kernel``, the variable
  the optimiser updates and weight decay acts on); ``call`` uses
  ``quantize_weight(kernel, w_bits)`` (:mod:`rolekd_tf.quant.dorefa`). The bias is never
  quantised. With ``w_bits=32`` the layer behaves exactly like its parent class.
* :class:`ActivationQuantizer`: ``quantize_activation(x, a_bits)``; a plain ReLU at 32 bits.

For export code: ``layer.w_bits`` (int) and ``layer.dorefa_kernel()`` — the effective kernel the
forward pass uses (a float tensor of the kernel's shape; equal to ``layer.kernel`` at 32 bits).
For ``2 ≤ w_bits ≤ 8`` its values are the odd multiples of ``1/(2^w_bits − 1)`` in [−1, 1];
for ``w_bits = 1`` they are ``±mean|kernel|``. ``layer.a_bits`` of an :class:`ActivationQuantizer`
gives the activation grid ``i/(2^a_bits − 1)``. (The method is not called ``quantized_kernel``
because Keras' own ``Dense``/``Conv`` quantisation modes use that attribute name.)
"""
from __future__ import annotations

import keras
from keras import ops

from rolekd_tf.errors import ModelError
from rolekd_tf.quant.dorefa import (int8_levels, quantize_activation, quantize_int8_per_channel, quantize_weight,
                                    validate_bits)


@keras.saving.register_keras_serializable(package="rolekd_tf")
class QuantConv2D(keras.layers.Conv2D):
    """2-D convolution with a DoReFa ``w_bits``-bit kernel (Zhou et al. 2016).

    Forward: ``y = conv(x, Q_w(kernel)) + bias`` with ``Q_w = quantize_weight(·, w_bits)``.
    Backward: straight-through on the round only (see :mod:`rolekd_tf.quant.dorefa`); the latent
    float kernel receives the gradient.
    """

    def __init__(self, filters, kernel_size, *, w_bits: int = 32, int8_weights: bool = False,
                 int8_step: int = 1, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.w_bits = validate_bits(w_bits, "w_bits")
        self.int8_weights = bool(int8_weights)
        if self.int8_weights and self.w_bits != 32:
            raise ModelError(f"layer {kwargs.get('name')!r}: int8_weights=True needs w_bits=32 (got {self.w_bits})")
        try:
            int8_levels(int8_step)
        except ValueError as e:
            raise ModelError(f"layer {kwargs.get('name')!r}: {e}") from None
        self.int8_step = int(int8_step)
        if self.int8_step != 1 and not self.int8_weights:
            raise ModelError(f"layer {kwargs.get('name')!r}: int8_step={self.int8_step} needs int8_weights=True")

    @property
    def is_quantized(self) -> bool:
        return self.w_bits < 32

    def dorefa_kernel(self):
        """The kernel actually used by ``call``: ``quantize_weight(self.kernel, self.w_bits)``, or
        with ``int8_weights`` (opt-in, full precision only) the per-output-channel symmetric int8
        fake quantisation :func:`~rolekd_tf.quant.dorefa.quantize_int8_per_channel` (integers
        −⌊127/int8_step⌋…⌊127/int8_step⌋ per channel, stored ×``int8_step`` by the int8 export)."""
        if self.int8_weights:
            return quantize_int8_per_channel(self.kernel, self.int8_step)
        return quantize_weight(self.kernel, self.w_bits)

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.dorefa_kernel())
        if self.use_bias:
            if self.data_format == "channels_last":
                bias_shape = (1,) * (self.rank + 1) + (self.filters,)
            else:
                bias_shape = (1, self.filters) + (1,) * self.rank
            outputs = ops.add(outputs, ops.reshape(self.bias, bias_shape))
        if self.activation is not None:
            return self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["w_bits"] = self.w_bits
        if self.int8_weights:  # only when set: configs of default layers are unchanged
            config["int8_weights"] = True
        if self.int8_step != 1:
            config["int8_step"] = self.int8_step
        return config


@keras.saving.register_keras_serializable(package="rolekd_tf")
class QuantDense(keras.layers.Dense):
    """Dense layer with a DoReFa ``w_bits``-bit kernel (Zhou et al. 2016).

    Forward: ``y = x · Q_w(kernel) + bias``; backward as :class:`QuantConv2D`.
    """

    def __init__(self, units, *, w_bits: int = 32, int8_weights: bool = False, kernel_gain: float = 1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.w_bits = validate_bits(w_bits, "w_bits")
        self.int8_weights = bool(int8_weights)
        self.kernel_gain = float(kernel_gain)
        if not self.kernel_gain > 0:
            raise ModelError(f"layer {kwargs.get('name')!r}: kernel_gain={kernel_gain!r} must be > 0")
        if self.int8_weights and self.w_bits != 32:
            raise ModelError(f"layer {kwargs.get('name')!r}: int8_weights=True needs w_bits=32 (got {self.w_bits})")

    @property
    def is_quantized(self) -> bool:
        return self.w_bits < 32

    def dorefa_kernel(self):
        """The kernel actually used by ``call``: ``quantize_weight(self.kernel, self.w_bits)``, or
        with ``int8_weights`` (opt-in, full precision only; the ``exact_tail`` logits) the
        per-output-channel symmetric int8 fake quantisation; times ``kernel_gain`` (a constant,
        default 1: a larger effective learning rate for a head whose inputs are small, e.g. in
        [0, 1] — the product is still on a per-channel int8 grid)."""
        k = quantize_int8_per_channel(self.kernel) if self.int8_weights else quantize_weight(self.kernel, self.w_bits)
        return k if self.kernel_gain == 1.0 else k * self.kernel_gain

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.dorefa_kernel())
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        config = super().get_config()
        config["w_bits"] = self.w_bits
        if self.int8_weights:  # only when set: configs of default layers are unchanged
            config["int8_weights"] = True
        if self.kernel_gain != 1.0:
            config["kernel_gain"] = self.kernel_gain
        return config


@keras.saving.register_keras_serializable(package="rolekd_tf")
class ActivationQuantizer(keras.layers.Layer):
    """DoReFa ``a_bits``-bit activation quantiser replacing a ReLU (Zhou et al. 2016).

    Forward: ``Q_k(clip(x, 0, 1))`` (``k = a_bits``), or ``relu(x)`` when ``a_bits = 32``.
    Backward: 1 inside ``[0, 1]``, 0 outside; straight-through on the round.
    """

    def __init__(self, a_bits: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.a_bits = validate_bits(a_bits, "a_bits")

    @property
    def is_quantized(self) -> bool:
        return self.a_bits < 32

    def call(self, inputs):
        return quantize_activation(inputs, self.a_bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["a_bits"] = self.a_bits
        return config
