"""Pre-activation networks: PreResNet (He et al. 2016, "Identity Mappings in Deep Residual
Networks") and Wide ResNet (Zagoruyko & Komodakis 2016) for CIFAR.

Block: ``BN → act → conv → BN → act → conv`` (+ shortcut). The first ``act`` is the block-entry
activation quantiser; a 1×1 projection shortcut (used when shape changes) takes that pre-activated,
quantised input, an identity shortcut carries the raw block input (as in the reference Torch code).
The network ends with a full-precision ``BN → ReLU → GAP → logits``. Stem conv and logits are FP.
Taps (docs/KD.md §1, pre-activation nets): the stage output, i.e. the residual sum of the last block of
each stage (before the next stage's BN / the final BN).
"""
from __future__ import annotations

import keras

from rolekd_tf.models import _blocks as B


def _preact_entry(x, a_bits: int, name: str):
    """``BN → act``: the pre-activated block input that the branch and a projection read."""
    return B.act_q(B.bn(x, f"{name}_bn1"), a_bits, f"{name}_in_aq")


def _add_shortcut(y, x, p, out_ch: int, stride: int, w_bits: int, name: str):
    """``y`` + shortcut: a 1×1 projection of ``p`` where the shape changes, else ``x`` itself."""
    needs_proj = stride != 1 or x.shape[-1] != out_ch
    sc = B.conv(p, out_ch, 1, stride, f"{name}_proj_conv", w_bits) if needs_proj else x
    return keras.layers.Add(name=f"{name}_add")([y, sc])


def preact_basic_block(x, filters: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    p = _preact_entry(x, a_bits, name)
    y = B.basic_convs(p, filters, stride, w_bits=w_bits, a_bits=a_bits, name=name)
    return _add_shortcut(y, x, p, filters, stride, w_bits, name)


def preact_bottleneck_block(x, planes: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    p = _preact_entry(x, a_bits, name)
    y = B.bottleneck_convs(p, planes, 4 * planes, stride, w_bits=w_bits, a_bits=a_bits, name=name)
    return _add_shortcut(y, x, p, 4 * planes, stride, w_bits, name)


def _build_preact(*, name, stages, blocks_per_stage, block_fn, num_classes, w_bits, a_bits,
                  input_shape):
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = B.conv(inputs, 16, 3, 1, "stem_conv", w_bits=32)
    for s, (width, stride) in enumerate(stages, start=1):
        for b in range(1, blocks_per_stage + 1):
            x = block_fn(x, width, stride if b == 1 else 1, w_bits=w_bits, a_bits=a_bits,
                         name=f"stage{s}_block{b}")
        x = B.tap(x, s)
    x = B.bn(x, "final_bn")
    x = B.relu(x, "final_relu")
    logits = B.head(x, num_classes)
    return keras.Model(inputs, logits, name=name)


def preresnet(depth: int, *, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3)):
    """PreResNet-``depth``: basic blocks (depth = 6n + 2) below 164, bottlenecks (depth = 9n + 2,
    widths 16/32/64 ×4) from 164 on."""
    if depth >= 164:
        n, block_fn = (depth - 2) // 9, preact_bottleneck_block
    else:
        n, block_fn = (depth - 2) // 6, preact_basic_block
    return _build_preact(name=f"preresnet{depth}", stages=((16, 1), (32, 2), (64, 2)),
                         blocks_per_stage=n, block_fn=block_fn, num_classes=num_classes,
                         w_bits=w_bits, a_bits=a_bits, input_shape=input_shape)


def wide_resnet(depth: int, widen: int, *, num_classes, w_bits=32, a_bits=32,
                input_shape=(32, 32, 3)):
    """WRN-``depth``-``widen``: (depth − 4)/6 pre-activation basic blocks per stage, widths
    16k/32k/64k, strides 1/2/2, no dropout."""
    n = (depth - 4) // 6
    return _build_preact(name=f"wrn-{depth}-{widen}",
                         stages=((16 * widen, 1), (32 * widen, 2), (64 * widen, 2)),
                         blocks_per_stage=n, block_fn=preact_basic_block, num_classes=num_classes,
                         w_bits=w_bits, a_bits=a_bits, input_shape=input_shape)
