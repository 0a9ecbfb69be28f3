"""Quantisers as objects (as larq does): small serialisable callables that a layer holds.

A layer says *how* its kernel or activation is quantised by the object it holds
(``QuantConv2D(16, 3, kernel_quantizer=DoReFaWeights(2))``,
``ActivationQuantizer(DoReFaActivations(2))``); the object is saved in the ``.keras`` file
(registered under the package ``rolekd_tf``, so loading needs no ``custom_objects``) and export
code reads it back from the loaded model instead of inferring it from the graph.

==========================  ==============================================================  =====
quantiser                   forward (backward: see :mod:`rolekd_tf.quant.dorefa`)           bits
==========================  ==============================================================  =====
:class:`FullPrecision`      identity                                                        32
:class:`DoReFaWeights`      DoReFa k-bit weights: odd multiples of ``1/(2^k − 1)``, ±E at    k
                            k = 1 (``quantize_weight``)
:class:`DoReFaActivations`  ``Q_k(clip(x, 0, 1))``; ``relu`` at 32 (``quantize_activation``)  k
:class:`Int8Grid`           ``gain · s_j · round(w/s_j)``, per output channel ``j``,         8
                            ``s_j = max|w_j|/⌊127/step⌋`` (``quantize_int8_per_channel``)
==========================  ==============================================================  =====

Every attribute is read-only (a quantiser is a value: equal configs compare equal).
"""
from __future__ import annotations

import math

import keras

from rolekd_tf.errors import ModelError
from rolekd_tf.quant.dorefa import (int8_levels, quantize_activation, quantize_int8_per_channel, quantize_weight,
                                    validate_bits)


class Quantizer:
    """Base class: ``q(x)`` returns the quantised tensor (same shape and dtype as ``x``).

    ``bits``: the width of the grid (32 = full precision); ``levels``: how many distinct values
    the grid has (None when it is not a fixed grid)."""

    bits: int = 32

    @property
    def levels(self) -> int | None:
        return None

    def __call__(self, x):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Quantizer":
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="rolekd_tf")
class FullPrecision(Quantizer):
    """No quantisation: ``q(w) = w`` (the full-precision stem / logits of the paper's models)."""

    def __call__(self, x):
        return keras.ops.convert_to_tensor(x)


class _DoReFa(Quantizer):
    """A DoReFa grid of ``bits`` bits: ``steps = 2^bits − 1``, ``levels = 2^bits`` (None at 32)."""

    _bits: int

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def steps(self) -> int | None:
        """``n = 2^bits − 1`` (weights: odd multiples of ``1/n`` in [−1, 1] for bits ≥ 2;
        activations: ``i/n``, ``i = 0…n``); None at 32 bits."""
        return None if self._bits == 32 else 2**self._bits - 1

    @property
    def levels(self) -> int | None:
        return None if self._bits == 32 else 2**self._bits

    def get_config(self) -> dict:
        return {"bits": self._bits}


@keras.saving.register_keras_serializable(package="rolekd_tf")
class DoReFaWeights(_DoReFa):
    """DoReFa ``bits``-bit weights (1..8): ``quantize_weight(w, bits)``."""

    def __init__(self, bits: int):
        bits = validate_bits(bits, "w_bits")
        if bits == 32:
            raise ModelError("w_bits=32 is full precision, not a DoReFa grid; use FullPrecision()")
        self._bits = bits

    def __call__(self, x):
        return quantize_weight(x, self._bits)


@keras.saving.register_keras_serializable(package="rolekd_tf")
class DoReFaActivations(_DoReFa):
    """DoReFa ``bits``-bit activations (1..8, or 32 = a plain ReLU): ``quantize_activation``."""

    def __init__(self, bits: int):
        self._bits = validate_bits(bits, "a_bits")

    def __call__(self, x):
        return quantize_activation(x, self._bits)


@keras.saving.register_keras_serializable(package="rolekd_tf")
class Int8Grid(Quantizer):
    """An exact symmetric per-output-channel int8 weight grid (last axis = output channel):
    integers ``−max_int…max_int`` (``max_int = ⌊127/step⌋``) times a per-channel scale, stored by
    the int8 export as ``step·i`` — exact, as the BN fold only scales channels. ``gain`` (> 0,
    default 1) multiplies the result (still on a per-channel int8 grid): a larger effective
    learning rate for a head whose inputs are small (the ``int8.tail`` logits)."""

    bits = 8

    def __init__(self, step: int = 1, gain: float = 1.0):
        try:
            self._max_int = int8_levels(step)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self._step = int(step)
        try:
            self._gain = float(gain)
        except (TypeError, ValueError):
            self._gain = float("nan")
        if isinstance(gain, bool) or not (math.isfinite(self._gain) and self._gain > 0):
            raise ModelError(f"int8 grid gain={gain!r} is invalid; allowed: a finite number > 0")

    @property
    def step(self) -> int:
        return self._step

    @property
    def max_int(self) -> int:
        """``⌊127/step⌋``: the largest integer of the grid."""
        return self._max_int

    @property
    def gain(self) -> float:
        return self._gain

    @property
    def levels(self) -> int:
        return 2 * self._max_int + 1

    def __call__(self, x):
        w = quantize_int8_per_channel(x, self._step)
        return w if self._gain == 1.0 else w * self._gain

    def get_config(self) -> dict:
        return {"step": self._step, "gain": self._gain}


def weight_quantizer(w_bits: int) -> Quantizer:
    """The kernel quantiser of a ``w_bits`` layer: :class:`FullPrecision` at 32, else
    :class:`DoReFaWeights` (ModelError naming ``w_bits`` outside 1..8 or 32)."""
    return FullPrecision() if validate_bits(w_bits, "w_bits") == 32 else DoReFaWeights(w_bits)


def get_quantizer(value, what: str) -> Quantizer:
    """``value`` as a quantiser: a :class:`Quantizer`, its serialised form (a ``.keras`` config)
    or None (:class:`FullPrecision`); anything else is a ModelError naming ``what``."""
    if value is None:
        return FullPrecision()
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, Quantizer):
        raise ModelError(f"{what}={value!r} is not a quantiser; allowed: a rolekd_tf.quant quantiser "
                         "(FullPrecision(), DoReFaWeights(k), DoReFaActivations(k), Int8Grid(step))")
    return value
