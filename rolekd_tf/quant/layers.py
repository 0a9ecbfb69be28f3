"""Quantisation-aware Keras layers that hold quantiser objects (:mod:`rolekd_tf.quant.quantizers`).

* :class:`QuantConv2D` / :class:`QuantDense`: ``keras.layers.Conv2D`` / ``keras.layers.Dense`` with
  a ``kernel_quantizer`` (default :class:`~rolekd_tf.quant.FullPrecision`). The layer stores a
  float *latent* kernel (``layer.kernel``, the variable the optimiser updates and weight decay acts
  on); ``call`` uses ``kernel_quantizer(kernel)``. The bias is never quantised. With
  ``FullPrecision()`` the layer behaves exactly like its parent class.
* :class:`ActivationQuantizer`: ``quantizer(x)`` with a
  :class:`~rolekd_tf.quant.DoReFaActivations` (a plain ReLU at 32 bits).

The quantiser is saved in the layer's config, so ``keras.saving.load_model`` rebuilds it without
``custom_objects``; ``.keras`` files written before quantisers were objects (``w_bits``,
``int8_weights``, ``int8_step``, ``kernel_gain`` / ``a_bits`` keys) load too.

For export code: ``layer.kernel_quantizer`` / ``layer.quantizer`` (the object: its type, ``bits``,
``step`` …), ``layer.dorefa_kernel()`` — the effective kernel the forward pass uses (a float
tensor of the kernel's shape) — and the derived read-only ``w_bits`` (the DoReFa weight bits; 32
for a kernel that is not DoReFa-quantised: full precision or an :class:`~rolekd_tf.quant.Int8Grid`)
and ``a_bits``. (The method is not called ``quantized_kernel`` because Keras' own
``Dense``/``Conv`` quantisation modes use that attribute name.)
"""
from __future__ import annotations

import keras
from keras import ops

from rolekd_tf.errors import ModelError
from rolekd_tf.quant.quantizers import (DoReFaActivations, DoReFaWeights, Int8Grid, Quantizer, get_quantizer,
                                        weight_quantizer)


def _upgrade_kernel_config(config: dict) -> dict:
    """A layer config of the format before quantiser objects (``w_bits``, ``int8_weights``,
    ``int8_step``, ``kernel_gain``) with those keys replaced by ``kernel_quantizer``."""
    legacy = {k: config.pop(k) for k in ("w_bits", "int8_weights", "int8_step", "kernel_gain") if k in config}
    if legacy and "kernel_quantizer" not in config:
        if legacy.get("int8_weights"):
            q = Int8Grid(legacy.get("int8_step", 1), legacy.get("kernel_gain", 1.0))
        else:
            q = weight_quantizer(legacy.get("w_bits", 32))
        config["kernel_quantizer"] = keras.saving.serialize_keras_object(q)
    return config


class _KernelQuantized:
    """What QuantConv2D and QuantDense share: the kernel quantiser, its config and views of it."""

    def _set_kernel_quantizer(self, kernel_quantizer, name) -> None:
        q = get_quantizer(kernel_quantizer, f"layer {name!r}: kernel_quantizer")
        if isinstance(q, DoReFaActivations):
            raise ModelError(f"layer {name!r}: kernel_quantizer={q!r} is an activation quantiser; allowed: "
                             "FullPrecision(), DoReFaWeights(k), Int8Grid(step)")
        self.kernel_quantizer: Quantizer = q

    @property
    def w_bits(self) -> int:
        """DoReFa weight bits (1..8), or 32 when the kernel is not DoReFa-quantised."""
        return self.kernel_quantizer.bits if isinstance(self.kernel_quantizer, DoReFaWeights) else 32

    @property
    def is_quantized(self) -> bool:
        return self.w_bits < 32

    @property
    def int8_weights(self) -> bool:
        """True if the kernel lies on an exact per-channel int8 grid (:class:`Int8Grid`)."""
        return isinstance(self.kernel_quantizer, Int8Grid)

    @property
    def int8_step(self) -> int:
        """The :class:`Int8Grid` step (1 for any other kernel quantiser)."""
        return self.kernel_quantizer.step if isinstance(self.kernel_quantizer, Int8Grid) else 1

    def dorefa_kernel(self):
        """The kernel actually used by ``call``: ``kernel_quantizer(kernel)``."""
        return self.kernel_quantizer(self.kernel)

    def _add_quantizer_config(self, config: dict) -> dict:
        config["kernel_quantizer"] = keras.saving.serialize_keras_object(self.kernel_quantizer)
        return config

    @classmethod
    def from_config(cls, config):
        return super().from_config(_upgrade_kernel_config(dict(config)))


@keras.saving.register_keras_serializable(package="rolekd_tf")
class QuantConv2D(_KernelQuantized, keras.layers.Conv2D):
    """2-D convolution with a quantised kernel: ``y = conv(x, kernel_quantizer(kernel)) + bias``.

    Backward: the quantiser's straight-through gradient (:mod:`rolekd_tf.quant.dorefa`); the latent
    float kernel receives it.
    """

    def __init__(self, filters, kernel_size, *, kernel_quantizer: Quantizer | None = None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._set_kernel_quantizer(kernel_quantizer, kwargs.get("name"))

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
        return self._add_quantizer_config(super().get_config())


@keras.saving.register_keras_serializable(package="rolekd_tf")
class QuantDense(_KernelQuantized, keras.layers.Dense):
    """Dense layer with a quantised kernel: ``y = x · kernel_quantizer(kernel) + bias``; backward
    as :class:`QuantConv2D`."""

    def __init__(self, units, *, kernel_quantizer: Quantizer | None = None, **kwargs):
        super().__init__(units, **kwargs)
        self._set_kernel_quantizer(kernel_quantizer, kwargs.get("name"))

    def call(self, inputs, training=None):
        x = ops.matmul(inputs, self.dorefa_kernel())
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def get_config(self):
        return self._add_quantizer_config(super().get_config())


@keras.saving.register_keras_serializable(package="rolekd_tf")
class ActivationQuantizer(keras.layers.Layer):
    """An activation quantiser replacing a ReLU: ``quantizer(x)`` with a
    :class:`~rolekd_tf.quant.DoReFaActivations` (Zhou et al. 2016).

    Forward: ``Q_k(clip(x, 0, 1))`` (``k = quantizer.bits``), or ``relu(x)`` at 32 bits.
    Backward: 1 inside ``[0, 1]``, 0 outside; straight-through on the round.
    """

    def __init__(self, quantizer: DoReFaActivations, **kwargs):
        super().__init__(**kwargs)
        q = get_quantizer(quantizer, f"layer {kwargs.get('name')!r}: quantizer")
        if not isinstance(q, DoReFaActivations):
            raise ModelError(f"layer {kwargs.get('name')!r}: quantizer={q!r} is not an activation quantiser; "
                             "allowed: DoReFaActivations(k)")
        self.quantizer: DoReFaActivations = q

    @property
    def a_bits(self) -> int:
        """The activation bits (32 = a plain ReLU)."""
        return self.quantizer.bits

    @property
    def is_quantized(self) -> bool:
        return self.a_bits < 32

    def call(self, inputs):
        return self.quantizer(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["quantizer"] = keras.saving.serialize_keras_object(self.quantizer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "a_bits" in config and "quantizer" not in config:  # the format before quantiser objects
            config["quantizer"] = keras.saving.serialize_keras_object(DoReFaActivations(config.pop("a_bits")))
        return cls(**config)


