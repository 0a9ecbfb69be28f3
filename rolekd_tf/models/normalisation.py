"""Input normalisation of the models: what a network expects of its input pixels.

Every model takes ``(x/255 − mean)/std`` per channel of RGB pixels ``x`` in [0, 255], with the
dataset's mean/std (:class:`rolekd_tf.data.DatasetInfo`), except the int8-exact stem variant
(``int8.stem``, :class:`rolekd_tf.config.Int8Exactness`), which takes ``(x − 128)/64`` whatever
the dataset. The data pipelines (training) and the exported files (the normalisation inside the
graph) both read it from here.
"""
from __future__ import annotations

import numpy as np

from rolekd_tf.errors import ModelError

#: the ``int8.stem`` variant's input is ``(pixels − EXACT_STEM_CENTRE)/EXACT_STEM_SCALE`` (≈ the
#: dataset normalisation of CIFAR-10, mean ≈ 114–125, std ≈ 62–67 pixel units): its zero padding is
#: the pixel value 128, which the int8 file reproduces exactly by feeding the first conv ``pixels −
#: 128`` as int8 with zero point 0 (TFLite pads a conv input with its zero point)
EXACT_STEM_CENTRE = 128
EXACT_STEM_SCALE = 64


def exact_stem_normalisation():
    """``(mean, std)`` per channel, in the ``x/255`` units of :func:`preprocessing_layer`, that give
    the exact-stem input ``(pixels − 128)/64`` (exactly: scale 1/64, offset −2)."""
    return (EXACT_STEM_CENTRE / 255.0,) * 3, (EXACT_STEM_SCALE / 255.0,) * 3


def input_normalisation(exact_stem: bool, mean, std):
    """The ``(mean, std)`` a model built with ``int8.stem = exact_stem`` expects, given the
    dataset's ``mean``/``std``."""
    return exact_stem_normalisation() if exact_stem else (mean, std)


def stem_convs(model) -> list:
    """The :class:`~rolekd_tf.quant.QuantConv2D` layers that read the input of the functional
    ``model`` directly."""
    from rolekd_tf.quant import QuantConv2D

    inputs = {id(t) for t in model.inputs}
    return [l for l in model.layers if isinstance(l, QuantConv2D) and id(l.input) in inputs]


def has_exact_stem(model) -> bool:
    """True if a conv reading the input of ``model`` has an :class:`~rolekd_tf.quant.Int8Grid`
    kernel quantiser (the ``int8.stem`` variant: input ``(pixels − 128)/64``)."""
    from rolekd_tf.quant import Int8Grid

    return any(isinstance(c.kernel_quantizer, Int8Grid) for c in stem_convs(model))


def model_normalisation(model, mean, std):
    """The ``(mean, std)`` the input of ``model`` expects: the dataset's, or those of
    :func:`exact_stem_normalisation` for the exact-stem variant (read off its stem's quantiser)."""
    return input_normalisation(has_exact_stem(model), mean, std)


def preprocessing_layer(mean, std, name: str = "preprocess"):
    """``keras.layers.Rescaling`` computing ``(x/255 − mean)/std`` per channel (built-in layer, so
    the ``.keras`` file needs no custom objects); ``mean``/``std``: 3 values each, ``std > 0``."""
    import keras

    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (3,) or std.shape != (3,) or np.any(std <= 0):
        raise ModelError(f"dataset mean/std must be 3 values each with std > 0; got mean={mean.tolist()} std={std.tolist()}")
    scale = (1.0 / (255.0 * std)).tolist()
    offset = (-mean / std).tolist()
    return keras.layers.Rescaling(scale=scale, offset=offset, name=name)


def normalise(pixels, mean, std, dtype=np.float32) -> np.ndarray:
    """``(x/255 − mean)/std`` per channel of ``pixels`` (N, H, W, 3) in [0, 255], computed in float64
    and returned as ``dtype``: in numpy what :func:`preprocessing_layer` computes in the graph (the
    caller's work for a file that takes normalised images; the float64 reference's input)."""
    m = np.asarray(mean, np.float64).reshape(-1)
    s = np.asarray(std, np.float64).reshape(-1)
    return ((np.asarray(pixels, np.float64) / 255.0 - m) / s).astype(dtype)


def normalised_range(mean, std) -> tuple[float, float]:
    """``(lo, hi)``: the smallest and largest normalised value any pixel 0..255 of any channel
    takes; the int8 input grid of a file that takes normalised images spans it, so no image is
    clipped. For the exact-stem normalisation ``(x − 128)/64`` it is ``(−2, 127/64)``: step 1/64,
    zero point 0, i.e. the int8 values are exactly ``pixels − 128``."""
    m = np.asarray(mean, np.float64).reshape(-1)
    s = np.asarray(std, np.float64).reshape(-1)
    return float(np.min(-m / s)), float(np.max((1.0 - m) / s))
