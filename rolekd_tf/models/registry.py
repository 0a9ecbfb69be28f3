"""Model registry: name → builder, plus :func:`build_model`.

Canonical names (:func:`available_models`) are registered explicitly; four families also accept
any valid depth/width by pattern: ``resnet{6n+2}`` (e.g. ``resnet8``, ``resnet110``),
``preresnet{d}`` (6n + 2 below 164, 9n + 2 from 164 on), ``wrn-{d}-{k}`` (d = 6n + 4) and
``pyramidnet-{d}-{α}`` (basic 6n + 2 below 164, bottleneck 9n + 2 from 164 on; a ``-basic`` /
``-bottleneck`` suffix forces the block type, e.g. ``pyramidnet-11-12-bottleneck``).
"""
from __future__ import annotations

import difflib
import functools
import re
from typing import Callable

import keras

from rolekd_tf.config import Int8Exactness
from rolekd_tf.errors import ModelError
from rolekd_tf.models._blocks import BN_MOMENTUM, set_bn_momentum
from rolekd_tf.models.alexnet import alexnet
from rolekd_tf.models.preresnet import preresnet, wide_resnet
from rolekd_tf.models.pyramidnet import pyramidnet
from rolekd_tf.models.resnet import resnet18, resnet_cifar
from rolekd_tf.quant.dorefa import validate_bits

#: builder(*, num_classes, w_bits, a_bits, input_shape) -> keras.Model
Builder = Callable[..., keras.Model]

MODELS: dict[str, Builder] = {
    "resnet18": resnet18,
    "resnet20": functools.partial(resnet_cifar, 20),
    "resnet32": functools.partial(resnet_cifar, 32),
    "resnet56": functools.partial(resnet_cifar, 56),
    "alexnet": alexnet,
    **{f"preresnet{d}": functools.partial(preresnet, d) for d in (20, 32, 44, 56, 110, 164)},
    **{f"wrn-{d}-{k}": functools.partial(wide_resnet, d, k)
       for d, k in ((16, 2), (16, 4), (28, 10), (40, 2))},
    # Han et al.'s CIFAR models (paper §5.6 uses PyramidNet-200-240 as a teacher)
    **{f"pyramidnet-{d}-{a}": functools.partial(pyramidnet, d, a) for d, a in ((110, 48), (200, 240))},
}

_FAMILIES = ("resnet{6n+2}, preresnet{6n+2 | 9n+2 for >=164}, wrn-{6n+4}-{k}, "
             "pyramidnet-{6n+2 | 9n+2 for >=164}-{alpha}[-basic|-bottleneck]")


def register_model(name: str, builder: Builder) -> None:
    """Add a builder under ``name`` (raises ModelError if the name is taken)."""
    if name in MODELS:
        raise ModelError(f"model name {name!r} is already registered")
    MODELS[name] = builder


def available_models() -> list[str]:
    """The registered (canonical) model names, sorted."""
    return sorted(MODELS)


def _from_pattern(name: str) -> Builder | None:
    m = re.fullmatch(r"resnet(\d+)", name)
    if m:
        d = int(m.group(1))
        if d >= 8 and (d - 2) % 6 == 0:
            return functools.partial(resnet_cifar, d)
        raise ModelError(f"model {name!r}: CIFAR ResNet depth must be 6n+2 with n >= 1 "
                         f"(e.g. 20, 32, 56) or 18; got {d}")
    m = re.fullmatch(r"preresnet(\d+)", name)
    if m:
        d = int(m.group(1))
        if (d < 164 and d >= 8 and (d - 2) % 6 == 0) or (d >= 164 and (d - 2) % 9 == 0):
            return functools.partial(preresnet, d)
        raise ModelError(f"model {name!r}: PreResNet depth must be 6n+2 (basic, < 164) or 9n+2 "
                         f"(bottleneck, >= 164); got {d}")
    m = re.fullmatch(r"wrn-(\d+)-(\d+)", name)
    if m:
        d, k = int(m.group(1)), int(m.group(2))
        if d >= 10 and (d - 4) % 6 == 0 and k >= 1:
            return functools.partial(wide_resnet, d, k)
        raise ModelError(f"model {name!r}: WRN depth must be 6n+4 (e.g. 16, 28, 40) and "
                         f"widen factor >= 1; got depth {d}, widen {k}")
    m = re.fullmatch(r"pyramidnet-(\d+)-(\d+)(?:-(basic|bottleneck))?", name)
    if m:
        from rolekd_tf.models.pyramidnet import block_type_for, blocks_per_stage

        d, a = int(m.group(1)), int(m.group(2))
        block = m.group(3) or block_type_for(d)
        blocks_per_stage(d, block)  # raises ModelError naming the allowed depths
        return functools.partial(pyramidnet, d, a, block=block)
    return None


def get_builder(name: str) -> Builder:
    """The builder for ``name``; unknown names raise ModelError with a suggestion."""
    if not isinstance(name, str):
        raise ModelError(f"model name must be a string; got {name!r}")
    key = name.strip().lower()
    if key in MODELS:
        return MODELS[key]
    builder = _from_pattern(key)
    if builder is not None:
        return builder
    close = difflib.get_close_matches(key, available_models(), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelError(f"unknown model {name!r}; {hint}available: {', '.join(available_models())} "
                     f"(families: {_FAMILIES})")


#: the builders that implement :class:`~rolekd_tf.config.Int8Exactness` (post-activation ResNets)
_INT8_BUILDERS = (resnet18, resnet_cifar)


def build_model(name: str, *, num_classes: int, w_bits: int = 32, a_bits: int = 32,
                input_shape=(32, 32, 3), bn_momentum: float = BN_MOMENTUM,
                int8: Int8Exactness = Int8Exactness()) -> keras.Model:
    """Build model ``name`` as a functional Keras model taking normalised float32 NHWC images and
    returning logits (no softmax). Layers ``tap_1 … tap_n`` and ``logits`` are the KD taps.

    ``bn_momentum``: BatchNormalization moving-statistics decay (0.99 as in role-kd; short runs of
    a few hundred steps need a faster one, e.g. 0.9, or inference-mode BN lags behind).

    ``int8`` (the config's ``int8`` section; post-activation ResNets only): the int8-exact variant
    of :mod:`rolekd_tf.models.resnet`. With ``int8.stem`` the model takes ``(pixels − 128)/64``
    (:func:`rolekd_tf.models.model_normalisation`).
    """
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) \
            or not 0.0 <= float(bn_momentum) < 1.0:
        raise ModelError(f"bn_momentum={bn_momentum!r} is invalid; allowed: 0 <= momentum < 1")
    if not isinstance(int8, Int8Exactness):
        raise ModelError(f"int8={int8!r} is not an Int8Exactness (rolekd_tf.config)")
    builder = get_builder(name)
    w_bits = validate_bits(w_bits, "w_bits")
    a_bits = validate_bits(a_bits, "a_bits")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes={num_classes!r} is invalid; allowed: an integer >= 1")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"input_shape={input_shape!r} is invalid; allowed: (height, width, "
                         "channels) of positive integers")
    variant = {}
    if getattr(builder, "func", builder) in _INT8_BUILDERS:
        variant["int8"] = int8
    elif int8.enabled:
        raise ModelError(f"{', '.join(int8.enabled)} is only implemented for the post-activation ResNets "
                         f"(resnet18, resnet{{6n+2}}), not {name!r}")
    model = builder(num_classes=num_classes, w_bits=w_bits, a_bits=a_bits, input_shape=shape, **variant)
    set_bn_momentum(model, bn_momentum)
    return model
