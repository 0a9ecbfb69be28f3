"""KD feature taps: named layers inside one model definition (no second model).

A model built by :mod:`rolekd_tf.models` names the output of the last block of each stage
``tap_1 … tap_n`` and its final dense layer ``logits``. Distillation reads those outputs through
:func:`feature_model`, which shares every layer and weight with the original model.
"""
from __future__ import annotations

import re

import keras

from rolekd_tf.errors import ModelError

_TAP = re.compile(r"^tap_(\d+)$")


def tap_layer_names(model: keras.Model) -> list[str]:
    """Names of the KD feature taps in depth order (``tap_1 … tap_n``), logits excluded."""
    taps = []
    for layer in model.layers:
        m = _TAP.match(layer.name)
        if m:
            taps.append((int(m.group(1)), layer.name))
    if not taps:
        raise ModelError(
            f"model {model.name!r} has no KD feature taps (layers named tap_1..tap_n); "
            "build it with rolekd_tf.models.build_model"
        )
    return [name for _, name in sorted(taps)]


def feature_model(model: keras.Model) -> keras.Model:
    """A functional view of ``model`` returning ``[tap_1, …, tap_n, logits]``.

    Shapes: tap_i is ``[B, H_i, W_i, C_i]`` (or ``[B, C_i]`` for dense taps), logits ``[B, classes]``.
    Weights are shared with ``model`` (same layer objects), so training one trains the other.
    """
    names = tap_layer_names(model)
    try:
        logits = model.get_layer("logits").output
    except ValueError:
        raise ModelError(f"model {model.name!r} has no layer named 'logits'") from None
    outputs = [model.get_layer(n).output for n in names] + [logits]
    # A single input stays a single tensor (a one-element list would make Keras warn about the
    # input structure on every call with a plain tensor).
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=f"{model.name}_features")
