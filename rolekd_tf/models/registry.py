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

from rolekd_tf.errors import ModelError
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


def build_model(name: str, *, num_classes: int, w_bits: int = 32, a_bits: int = 32,
                input_shape=(32, 32, 3), bn_momentum: float = 0.99, exact_stem: bool = False,
                exact_stem_step: int = 1, shared_proj_bn: bool = False, shortcut: str = "projection",
                exact_tail: bool = False) -> keras.Model:
    """Build model ``name`` as a functional Keras model taking normalised float32 NHWC images and
    returning logits (no softmax). Layers ``tap_1 … tap_n`` and ``logits`` are the KD taps.

    ``bn_momentum``: BatchNormalization moving-statistics decay (0.99 as in role-kd; short runs of
    a few hundred steps need a faster one, e.g. 0.9, or inference-mode BN lags behind).

    ``exact_stem`` / ``shared_proj_bn`` (opt-in, ResNet-18 / CIFAR ResNets only): the int8-exact
    variant of :mod:`rolekd_tf.models.resnet` (with ``exact_stem`` the model takes ``(pixels − 128)/64``;
    ``exact_stem_step``: its integer weights are multiples of this, 1..42).
    ``shortcut`` (``"projection"`` default | ``"zero_pad"``, option A) and ``exact_tail`` (k-bit last
    block output, int8-grid logits kernel): same models only, see :mod:`rolekd_tf.models.resnet`.
    """
    if not 0.0 <= float(bn_momentum) < 1.0:
        raise ModelError(f"bn_momentum={bn_momentum!r} is invalid; allowed: 0 <= momentum < 1")
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
    from rolekd_tf.models._blocks import bn_momentum as _bn_momentum

    variant = {k: True for k, v in (("exact_stem", exact_stem), ("shared_proj_bn", shared_proj_bn),
                                    ("exact_tail", exact_tail)) if v}
    from rolekd_tf.models.resnet import SHORTCUTS

    if shortcut not in SHORTCUTS:
        raise ModelError(f"shortcut={shortcut!r} is not allowed; allowed: {', '.join(SHORTCUTS)}")
    if shortcut != "projection":  # passed only when not the default: builders stay unchanged
        variant["shortcut"] = shortcut
    from rolekd_tf.quant.dorefa import int8_levels

    try:
        int8_levels(exact_stem_step)
    except ValueError:
        raise ModelError(f"exact_stem_step={exact_stem_step!r} is invalid; allowed: an integer in 1..42") from None
    if int(exact_stem_step) != 1:
        if not exact_stem:
            raise ModelError(f"exact_stem_step={exact_stem_step} needs exact_stem=True")
        variant["exact_stem_step"] = int(exact_stem_step)
    if variant and not (name == "resnet18" or str(name).startswith("resnet")):
        raise ModelError(f"{', '.join(variant)} is only implemented for the post-activation ResNets, not {name!r}")
    with _bn_momentum(bn_momentum):
        return builder(num_classes=num_classes, w_bits=w_bits, a_bits=a_bits, input_shape=shape, **variant)
