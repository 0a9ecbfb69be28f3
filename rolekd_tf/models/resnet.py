"""Post-activation CIFAR ResNets: ResNet-18 (CIFAR variant) and ResNet-{6n+2} (He et al. 2016).

Quantised layout (REFERENCE.md §3, role-kd): in every basic block an activation quantiser at the
block **entry** (its output also feeds the shortcut) and one after the first BN (replacing that
ReLU) — two per block. The residual add is followed by a full-precision ReLU; that FP block output
is what the KD taps see (``tap_s`` after the last block of stage ``s``). The stem conv and the
``logits`` dense are full precision; all other convs, including the 1×1 projection shortcuts, use
``w_bits``. With ``w_bits = a_bits = 32`` this is the plain ResNet (the entry quantiser is then a
ReLU of a non-negative input, i.e. the identity).

Opt-in "int8-exact" variant (both flags default off; experiment exp6):

* ``exact_stem``: the model takes ``pixels/255`` (a *scalar* scaling, no per-channel mean/std, so
  zero padding is black both in Keras and in the int8 file) and the stem kernel is fake-quantised
  onto a per-output-channel symmetric int8 grid (``QuantConv2D(int8_weights=True)``); BN folding
  (a per-channel factor) keeps it on an int8 grid, so the int8 export can store it exactly.
* ``shared_proj_bn``: a projection block computes ``BN(conv2(mid) + proj(x_q))`` — one BN after the
  add, shared by both DoReFa convs — so the export merges them into one exact int8 conv.
"""
from __future__ import annotations

import keras

from rolekd_tf.models import _blocks as B


def basic_block(x, filters: int, stride: int, *, w_bits: int, a_bits: int, name: str,
                shared_proj_bn: bool = False):
    """Post-activation basic block (3×3, 3×3) with a 1×1 projection shortcut on shape change
    (``shared_proj_bn``: ``BN(conv2 + proj)``, one BN after the add, instead of two)."""
    xq = B.act_q(x, a_bits, f"{name}_in_aq")
    y = B.conv(xq, filters, 3, stride, f"{name}_conv1", w_bits)
    y = B.bn(y, f"{name}_bn1")
    y = B.act_q(y, a_bits, f"{name}_mid_aq")
    y = B.conv(y, filters, 3, 1, f"{name}_conv2", w_bits)
    if shared_proj_bn and (stride != 1 or x.shape[-1] != filters):
        sc = B.conv(xq, filters, 1, stride, f"{name}_proj_conv", w_bits)
        y = keras.layers.Add(name=f"{name}_add")([y, sc])
        y = B.bn(y, f"{name}_bn2")
        return B.relu(y, f"{name}_out")
    y = B.bn(y, f"{name}_bn2")
    if stride != 1 or x.shape[-1] != filters:
        sc = B.conv(xq, filters, 1, stride, f"{name}_proj_conv", w_bits)
        sc = B.bn(sc, f"{name}_proj_bn")
    else:
        sc = xq
    y = keras.layers.Add(name=f"{name}_add")([y, sc])
    return B.relu(y, f"{name}_out")


def build_resnet(*, name: str, stem_filters: int, stages, blocks_per_stage: int, num_classes: int,
                 w_bits: int, a_bits: int, input_shape, exact_stem: bool = False,
                 shared_proj_bn: bool = False) -> keras.Model:
    """Generic post-activation CIFAR ResNet.

    ``stages`` is a sequence of ``(filters, stride)``; each stage has ``blocks_per_stage`` basic
    blocks and ends with a tap. ``exact_stem`` / ``shared_proj_bn``: see the module docstring.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = B.conv(inputs, stem_filters, 3, 1, "stem_conv", w_bits=32, int8_weights=exact_stem)
    x = B.bn(x, "stem_bn")
    x = B.relu(x, "stem_relu")
    for s, (filters, stride) in enumerate(stages, start=1):
        for b in range(1, blocks_per_stage + 1):
            x = basic_block(x, filters, stride if b == 1 else 1, w_bits=w_bits, a_bits=a_bits,
                            name=f"stage{s}_block{b}", shared_proj_bn=shared_proj_bn)
        x = B.tap(x, s)
    logits = B.head(x, num_classes)
    return keras.Model(inputs, logits, name=name)


def resnet18(*, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3), **variant):
    """CIFAR ResNet-18: 3×3 stem 64 (stride 1, no max-pool), 4×2 blocks, 64/128/256/512."""
    return build_resnet(name="resnet18", stem_filters=64,
                        stages=((64, 1), (128, 2), (256, 2), (512, 2)), blocks_per_stage=2,
                        num_classes=num_classes, w_bits=w_bits, a_bits=a_bits,
                        input_shape=input_shape, **variant)


def resnet_cifar(depth: int, *, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3), **variant):
    """CIFAR ResNet-``depth`` (He et al.), depth = 6n + 2: 16/32/64 channels, n blocks per stage,
    1×1 projection shortcuts (option B) where the shape changes."""
    n = (depth - 2) // 6
    return build_resnet(name=f"resnet{depth}", stem_filters=16,
                        stages=((16, 1), (32, 2), (64, 2)), blocks_per_stage=n,
                        num_classes=num_classes, w_bits=w_bits, a_bits=a_bits,
                        input_shape=input_shape, **variant)
