"""Post-activation CIFAR ResNets: ResNet-18 (CIFAR variant) and ResNet-{6n+2} (He et al. 2016).

Quantised layout (docs/METHOD.md §3, role-kd): in every basic block an activation quantiser at the
block **entry** (its output also feeds the shortcut) and one after the first BN (replacing that
ReLU) — two per block. The residual add is followed by a full-precision ReLU; that FP block output
is what the KD taps see (``tap_s`` after the last block of stage ``s``). The stem conv and the
``logits`` dense are full precision; all other convs, including the 1×1 projection shortcuts, use
``w_bits``. With ``w_bits = a_bits = 32`` this is the plain ResNet (the entry quantiser is then a
ReLU of a non-negative input, i.e. the identity).

Opt-in "int8-exact" variant (:class:`~rolekd_tf.config.Int8Exactness`, the config's ``int8``
section; every option off by default; experiments exp6/exp7):

* ``stem``: the model takes ``(pixels − 128)/64`` (one fixed affine map for all channels,
  :mod:`rolekd_tf.models.normalisation`, so the int8 file can feed the first conv the integers
  ``pixels − 128`` with zero point 0, and both pad with the pixel value 128; an earlier
  ``pixels/255`` input, padded black, cost 3.0–6.3 points of FP accuracy on 6-epoch CIFAR-10, 3
  seeds; the centred input 0.9 points on average, within noise) and the stem kernel quantiser is
  an :class:`~rolekd_tf.quant.Int8Grid` (per-output-channel symmetric int8 grid); BN folding (a
  per-channel factor) keeps it on an int8 grid, so the int8 export can store it exactly.
  ``stem_step = g`` (default 1) trains that kernel on the integers −⌊127/g⌋…⌊127/g⌋, stored ×g: the
  accumulator then only takes multiples of g, which leaves the stem's integer bias room to keep
  all thresholds of a ≥ 3-bit quantiser (with g = 1 it cannot always: "stem bias lattice").
* ``shared_proj_bn``: a projection block computes ``BN(conv2(mid) + proj(x_q))`` — one BN after the
  add, shared by both DoReFa convs — so the export merges them into one exact int8 conv.
* ``shortcut="zero_pad"`` (default ``"projection"``): He et al.'s CIFAR "option A" — where the
  shape changes, the shortcut is the block's quantised input subsampled with the stride and
  zero-padded on channels (:class:`~rolekd_tf.models.layers.ZeroPadShortcut`, no weights). Its
  values stay on the entry quantiser's 1/n grid, so the int8 export's residual add is exact with
  no extra bytes.
* ``tail``: the last block's output is the a_bits ActivationQuantizer (clip to [0, 1] and round,
  instead of the FP ReLU) and the ``logits`` kernel quantiser is an ``Int8Grid``: the last add,
  the global average pool (mean of k-bit levels, exact in int8 when ``n·H·W ≤ 255``) and the
  logits accumulator are then exact in the int8 export, leaving only the rounding of the int8
  logits. Below 32 bits the logits grid has the constant gain ``tail_gain`` (the pooled inputs are
  in [0, 1]; the product is still on a per-channel int8 grid).
"""
from __future__ import annotations

import keras

from rolekd_tf.config import Int8Exactness
from rolekd_tf.models import _blocks as B
from rolekd_tf.models.layers import ZeroPadShortcut
from rolekd_tf.quant import Int8Grid


def basic_block(x, filters: int, stride: int, *, w_bits: int, a_bits: int, name: str,
                shared_proj_bn: bool = False, shortcut: str = "projection", quantize_out: bool = False):
    """Post-activation basic block (3×3, 3×3). Where the shape changes the shortcut is a 1×1
    projection (``shared_proj_bn``: ``BN(conv2 + proj)``, one BN after the add, instead of two) or,
    with ``shortcut="zero_pad"``, the subsampled, channel-zero-padded quantised input (option A).
    ``quantize_out``: the block output is the a_bits quantiser instead of the FP ReLU."""
    def out(t):
        return B.act_q(t, a_bits, f"{name}_out") if quantize_out else B.relu(t, f"{name}_out")

    xq = B.act_q(x, a_bits, f"{name}_in_aq")
    y = B.conv(xq, filters, 3, stride, f"{name}_conv1", w_bits)
    y = B.bn(y, f"{name}_bn1")
    y = B.act_q(y, a_bits, f"{name}_mid_aq")
    y = B.conv(y, filters, 3, 1, f"{name}_conv2", w_bits)
    reshape = stride != 1 or x.shape[-1] != filters
    if shortcut == "zero_pad" and reshape:
        y = B.bn(y, f"{name}_bn2")
        sc = ZeroPadShortcut(filters, stride, name=f"{name}_pad_shortcut")(xq)
        y = keras.layers.Add(name=f"{name}_add")([y, sc])
        return out(y)
    if shared_proj_bn and reshape:
        sc = B.conv(xq, filters, 1, stride, f"{name}_proj_conv", w_bits)
        y = keras.layers.Add(name=f"{name}_add")([y, sc])
        y = B.bn(y, f"{name}_bn2")
        return out(y)
    y = B.bn(y, f"{name}_bn2")
    if reshape:
        sc = B.conv(xq, filters, 1, stride, f"{name}_proj_conv", w_bits)
        sc = B.bn(sc, f"{name}_proj_bn")
    else:
        sc = xq
    y = keras.layers.Add(name=f"{name}_add")([y, sc])
    return out(y)


def build_resnet(*, name: str, stem_filters: int, stages, blocks_per_stage: int, num_classes: int,
                 w_bits: int, a_bits: int, input_shape, int8: Int8Exactness = Int8Exactness()) -> keras.Model:
    """Generic post-activation CIFAR ResNet.

    ``stages`` is a sequence of ``(filters, stride)``; each stage has ``blocks_per_stage`` basic
    blocks and ends with a tap. ``int8``: the int8-exact variant (see the module docstring; already
    validated by its constructor).
    """
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = B.conv(inputs, stem_filters, 3, 1, "stem_conv", w_bits=32,
               kernel_quantizer=Int8Grid(int8.stem_step) if int8.stem else None)
    x = B.bn(x, "stem_bn")
    x = B.relu(x, "stem_relu")
    stages = tuple(stages)
    for s, (filters, stride) in enumerate(stages, start=1):
        for b in range(1, blocks_per_stage + 1):
            last = s == len(stages) and b == blocks_per_stage
            x = basic_block(x, filters, stride if b == 1 else 1, w_bits=w_bits, a_bits=a_bits,
                            name=f"stage{s}_block{b}", shared_proj_bn=int8.shared_proj_bn, shortcut=int8.shortcut,
                            quantize_out=int8.tail and last)
        x = B.tap(x, s)
    tail = Int8Grid(gain=int8.tail_gain if a_bits < 32 else 1.0) if int8.tail else None
    logits = B.head(x, num_classes, kernel_quantizer=tail)
    return keras.Model(inputs, logits, name=name)


def resnet18(*, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3), int8: Int8Exactness = Int8Exactness()):
    """CIFAR ResNet-18: 3×3 stem 64 (stride 1, no max-pool), 4×2 blocks, 64/128/256/512."""
    return build_resnet(name="resnet18", stem_filters=64,
                        stages=((64, 1), (128, 2), (256, 2), (512, 2)), blocks_per_stage=2,
                        num_classes=num_classes, w_bits=w_bits, a_bits=a_bits,
                        input_shape=input_shape, int8=int8)


def resnet_cifar(depth: int, *, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3),
                 int8: Int8Exactness = Int8Exactness()):
    """CIFAR ResNet-``depth`` (He et al.), depth = 6n + 2: 16/32/64 channels, n blocks per stage,
    1×1 projection shortcuts (option B) where the shape changes."""
    n = (depth - 2) // 6
    return build_resnet(name=f"resnet{depth}", stem_filters=16,
                        stages=((16, 1), (32, 2), (64, 2)), blocks_per_stage=n,
                        num_classes=num_classes, w_bits=w_bits, a_bits=a_bits,
                        input_shape=input_shape, int8=int8)
