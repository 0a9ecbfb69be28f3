"""The exact-arithmetic reference of a Keras model: the same network and weights in float64.

A low-bit model has pre-activations on (or within float32 rounding of) its quantisers'
thresholds; float32 Keras then rounds some of them either way, and its class can flip. The
float64 twin settles those cases the way exact arithmetic does, so "agreement with float64" tells
exporter error apart from float32 noise: an int8 file that reproduces the integer arithmetic
exactly agrees with the twin even where it disagrees with float32 Keras.
"""
from __future__ import annotations

import numpy as np


def _to_float64(obj):
    """A Keras config with every float32 dtype policy replaced by float64."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "dtype" and v == "float32":
                out[k] = "float64"
            elif k == "dtype" and isinstance(v, dict) and v.get("class_name") == "DTypePolicy" \
                    and v.get("config", {}).get("name") == "float32":
                out[k] = {**v, "config": {**v["config"], "name": "float64"}}
            else:
                out[k] = _to_float64(v)
        return out
    if isinstance(obj, list):
        return [_to_float64(v) for v in obj]
    return obj


def float64_twin(model):
    """``model`` (a functional Keras model of registered layers) rebuilt with float64 variables and
    computation and its weights copied; its inputs are float64 tensors of the model's input shape."""
    import keras

    twin = keras.Model.from_config(_to_float64(model.get_config()))
    twin.set_weights([np.asarray(w, np.float64) for w in model.get_weights()])
    bad = [w.path for w in twin.weights if w.dtype != "float64"]
    if bad:
        raise TypeError(f"float64 twin kept non-float64 weights: {bad[:3]}")
    return twin


def float64_logits(model, pixels: np.ndarray, mean, std, *, batch: int = 200) -> np.ndarray:
    """Logits ``(N, classes)`` of the float64 twin on RGB ``pixels`` ``(N, H, W, 3)`` in [0, 255],
    normalised ``(x/255 − mean)/std`` in float64 (the model's own in-graph normalisation)."""
    import tensorflow as tf

    from rolekd_tf.models.normalisation import normalise

    twin = float64_twin(model)
    out = [np.asarray(twin(tf.constant(normalise(pixels[i:i + batch], mean, std, np.float64)), training=False))
           for i in range(0, len(pixels), batch)]
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])))
