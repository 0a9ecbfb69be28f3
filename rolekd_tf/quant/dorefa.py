"""DoReFa quantisers (Zhou et al. 2016, "DoReFa-Net: Training Low Bitwidth Convolutional Neural
Networks with Low Bitwidth Gradients", arXiv:1606.06160), as used by role-kd (docs/METHOD.md §3).

All functions are plain TensorFlow ops usable inside Keras layers, under ``tf.function`` and under
XLA (``jit_compile=True``). The *only* straight-through estimator (STE) is on the rounding step
(:func:`round_ste`) and, for 1-bit weights, on ``sign``; every other op (``tanh``, ``max``, ``clip``)
back-propagates its true derivative.

Notation: ``n = 2**k - 1`` quantisation steps; ``g`` is the upstream gradient.

``quantize_k(x, k)``
    forward  ``Q_k(x) = round(n·x) / n``  (x expected in [0, 1]; ``round`` is half-to-even, as
    ``tf.round``)
    backward ``dQ_k/dx = 1``  (STE through the round)

``quantize_weight(w, k)``
    * ``k = 32``: identity.
    * ``k = 1``: forward ``w_q = sign(w)·E`` with ``E = mean(|w|)`` over the whole kernel and
      ``sign(0) = +1`` (so every weight is ``±E``); backward ``dL/dw = g`` (identity): ``sign`` is
      straight-through and ``E`` is treated as a constant (``stop_gradient``), exactly as the
      DoReFa reference code (``gradient_override_map({"Sign": "Identity"})`` on ``sign(w/E)·E``).
    * ``2 ≤ k ≤ 8``: ``t = tanh(w)``, ``m = max|t|`` (whole kernel), ``u = t/(2m) + 1/2``,
      ``w_q = 2·Q_k(u) − 1``. Backward: ``dL/du = 2g`` (STE on the round), then the true
      derivatives ``dL/dt_i = g_i/m`` (direct) plus, through ``m``, ``dL/dm = −Σ_i g_i t_i / m²``
      routed to the arg-max element(s) ``j`` with factor ``sign(t_j)`` (ties share it equally, as
      ``tf.reduce_max``), and finally ``dL/dw = dL/dt · (1 − t²)``.
      Levels are the odd multiples of ``1/n`` in [−1, 1] (k = 2: {−1, −1/3, 1/3, 1}); no rescaling.

``quantize_activation(x, k)``
    * ``k = 32``: ``relu(x)``.
    * ``k < 32``: forward ``Q_k(clip(x, 0, 1))`` (replaces the ReLU); backward ``g`` where
      ``0 ≤ x ≤ 1`` and ``0`` outside (clip mask; STE through the round).
      Levels ``i/n, i = 0…n``.
"""
from __future__ import annotations

import tensorflow as tf

from rolekd_tf.config import ALLOWED_BITS, INT8_STEPS
from rolekd_tf.errors import ModelError

_EPS = 1e-12


def validate_bits(bits, what: str = "bits") -> int:
    """Return ``bits`` as an int if it is 1..8 or 32, else raise :class:`ModelError`.

    ``what`` names the setting in the message, e.g.
    ``"w_bits=33 is out of range; allowed: 1..8 or 32"``.
    """
    ok = isinstance(bits, int) and not isinstance(bits, bool)
    if not ok:
        # Accept integral floats / numpy ints (e.g. from YAML or numpy) but nothing else.
        try:
            ok = float(bits).is_integer() and not isinstance(bits, (bool, str))
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise ModelError(f"{what}={bits!r} is not an integer; allowed: 1..8 or 32")
    bits = int(bits)
    if bits not in ALLOWED_BITS:
        raise ModelError(f"{what}={bits} is out of range; allowed: 1..8 or 32")
    return bits


@tf.custom_gradient
def round_ste(x):
    """``tf.round`` with a straight-through (identity) gradient."""

    def grad(dy):
        return dy

    return tf.round(x), grad


@tf.custom_gradient
def _binary_weight(w):
    """``sign(w)·mean|w|`` (``sign(0) = +1``) with the identity gradient ``dL/dw = dL/dw_q``."""

    def grad(dy):
        return dy

    e = tf.reduce_mean(tf.abs(w))
    return tf.where(w >= 0, e, -e), grad


def quantize_k(x, k: int):
    """DoReFa ``Q_k(x) = round((2^k − 1)·x) / (2^k − 1)``; gradient: identity (STE on round)."""
    x = tf.convert_to_tensor(x)
    n = float(2**k - 1)
    return round_ste(x * n) / n


def quantize_weight(w, k: int):
    """DoReFa k-bit weight quantiser (see the module docstring for forward/backward formulas)."""
    k = validate_bits(k, "w_bits")
    w = tf.convert_to_tensor(w)
    if k == 32:
        return w
    if k == 1:
        return _binary_weight(w)
    t = tf.tanh(w)
    m = tf.maximum(tf.reduce_max(tf.abs(t)), _EPS)
    u = t / (2.0 * m) + 0.5
    return 2.0 * quantize_k(u, k) - 1.0


def quantize_int8_per_channel(w, step: int = 1):
    """Symmetric per-output-channel int8 fake quantisation of a kernel (last axis = output channel):
    ``L = ⌊127/step⌋``, ``s_j = max|w_j|/L``, ``w_q = round(w/s_j)·s_j`` (integers −L…L times
    ``s_j``; the int8 export stores them as ``step·i`` with scale ``s_j/step``, so its integer
    weights are multiples of ``step``: ``step ≥ 2`` leaves the integer bias room to keep every
    threshold of the quantiser that follows). Backward: straight-through (``dL/dw = g``). The
    forward of :class:`~rolekd_tf.quant.Int8Grid` (the opt-in int8-exact stem and logits, whose
    BN-folded kernels are then exactly on an int8 grid)."""
    levels = int8_levels(step)
    w = tf.convert_to_tensor(w)
    axes = list(range(len(w.shape) - 1))
    s = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes, keepdims=True), _EPS) / float(levels)
    return w + tf.stop_gradient(tf.round(w / s) * s - w)


def int8_levels(step) -> int:
    """``⌊127/step⌋``, the largest integer of the ``step`` grid; ValueError naming ``step`` if it is
    not an integer in 1..42."""
    try:
        ok = not isinstance(step, bool) and int(step) == step and int(step) in INT8_STEPS
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"int8 weight step={step!r} is invalid; allowed: an integer in 1..42")
    return 127 // int(step)


def quantize_activation(x, k: int):
    """DoReFa k-bit activation quantiser: ``relu`` at 32 bits, else ``Q_k(clip(x, 0, 1))``.

    Backward (k < 32): gradient 1 for ``0 ≤ x ≤ 1``, 0 outside (``tf.clip_by_value``'s mask),
    identity through the round.
    """
    k = validate_bits(k, "a_bits")
    x = tf.convert_to_tensor(x)
    if k == 32:
        return tf.nn.relu(x)
    return quantize_k(tf.clip_by_value(x, 0.0, 1.0), k)
