"""Post-activation CIFAR ResNets: ResNet-18 (CIFAR variant) and ResNet-{6n+2} (He et al. 2016).

Quantised layout (docs/METHOD.md §3, role-kd): in every basic block an activation quantiser at the
block **entry** (its output also feeds the shortcut) and one after the first BN (replacing that
ReLU) — two per block. The residual add is followed by a full-precision ReLU; that FP block output
is what the KD taps see (``tap_s`` after the last block of stage ``s``). The stem conv and the
``logits`` dense are full precision; all other convs, including the 1×1 projection shortcuts, use
``w_bits``. With ``w_bits = a_bits = 32`` this is the plain ResNet (the entry quantiser is then a
ReLU of a non-negative input, i.e. the identity).

Opt-in "int8-exact" variant (both flags default off; experiment exp6):

* ``exact_stem``: the model takes ``(pixels − 128)/64`` (one fixed affine map for all channels, so
  the int8 file can feed the first conv the integers ``pixels − 128`` with zero point 0, and both
  pad with the pixel value 128; an earlier ``pixels/255`` input, padded black, cost 3.0–6.3 points
  of FP accuracy on 6-epoch CIFAR-10, 3 seeds; the centred input 0.9 points on average, within noise) and the stem kernel is fake-quantised
  onto a per-output-channel symmetric int8 grid (``QuantConv2D(int8_weights=True)``); BN folding
  (a per-channel factor) keeps it on an int8 grid, so the int8 export can store it exactly.
  ``exact_stem_step = g`` (default 1) trains that kernel on the integers −⌊127/g⌋…⌊127/g⌋, stored
  ×g: the accumulator then only takes multiples of g, which leaves the stem's integer bias room
  to keep all thresholds of a ≥ 3-bit quantiser (with g = 1 it cannot always: "stem bias lattice").
* ``shared_proj_bn``: a projection block computes ``BN(conv2(mid) + proj(x_q))`` — one BN after the
  add, shared by both DoReFa convs — so the export merges them into one exact int8 conv.

Two more opt-in options (experiment exp7):

* ``shortcut="zero_pad"`` (default ``"projection"``): He et al.'s CIFAR "option A" — where the
  shape changes, the shortcut is the block's quantised input subsampled with the stride and
  zero-padded on channels (:class:`~rolekd_tf.models.layers.ZeroPadShortcut`, no weights). Its
  values stay on the entry quantiser's 1/n grid, so the int8 export's residual add is exact with
  no extra bytes.
* ``exact_tail``: the last block's output is the a_bits ActivationQuantizer (clip to [0, 1] and
  round, instead of the FP ReLU) and the ``logits`` kernel is fake-quantised on a per-channel int8
  grid (``QuantDense(int8_weights=True)``): the last add, the global average pool (mean of k-bit
  levels, exact in int8 when ``n·H·W ≤ 255``) and the logits accumulator are then exact in the
  int8 export, leaving only the rounding of the int8 logits. Below 32 bits the logits kernel has
  a constant gain ``EXACT_TAIL_GAIN`` (the pooled inputs are in [0, 1]; the product is still on a
  per-channel int8 grid).
"""
from __future__ import annotations

import keras

from rolekd_tf.errors import ModelError
from rolekd_tf.models import _blocks as B
from rolekd_tf.models.layers import ZeroPadShortcut


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


#: ``shortcut`` values of :func:`build_resnet` (where a block changes shape)
SHORTCUTS = ("projection", "zero_pad")
#: ``exact_tail`` at a_bits < 32: constant gain of the logits kernel (``QuantDense(kernel_gain=…)``).
#: The pooled features are means of levels in [0, 1]; with gain 1 the head learned too slowly in
#: the 6-epoch digits benchmark (w2a2 Keras 52.9 %), gain 4 gave 92.6 %, gain 16 diverged (exp7).
EXACT_TAIL_GAIN = 4.0


def build_resnet(*, name: str, stem_filters: int, stages, blocks_per_stage: int, num_classes: int,
                 w_bits: int, a_bits: int, input_shape, exact_stem: bool = False,
                 exact_stem_step: int = 1, shared_proj_bn: bool = False, shortcut: str = "projection",
                 exact_tail: bool = False, tail_gain: float | None = None) -> keras.Model:
    """Generic post-activation CIFAR ResNet.

    ``stages`` is a sequence of ``(filters, stride)``; each stage has ``blocks_per_stage`` basic
    blocks and ends with a tap. ``exact_stem`` / ``shared_proj_bn`` / ``shortcut`` /
    ``exact_tail``: see the module docstring.
    """
    if shortcut not in SHORTCUTS:
        raise ModelError(f"shortcut={shortcut!r} is not allowed; allowed: {', '.join(SHORTCUTS)}")
    if shared_proj_bn and shortcut != "projection":
        raise ModelError(f"shared_proj_bn needs shortcut='projection' (got {shortcut!r}: no projection convs)")
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = B.conv(inputs, stem_filters, 3, 1, "stem_conv", w_bits=32, int8_weights=exact_stem,
               int8_step=exact_stem_step)
    x = B.bn(x, "stem_bn")
    x = B.relu(x, "stem_relu")
    stages = tuple(stages)
    for s, (filters, stride) in enumerate(stages, start=1):
        for b in range(1, blocks_per_stage + 1):
            last = s == len(stages) and b == blocks_per_stage
            x = basic_block(x, filters, stride if b == 1 else 1, w_bits=w_bits, a_bits=a_bits,
                            name=f"stage{s}_block{b}", shared_proj_bn=shared_proj_bn, shortcut=shortcut,
                            quantize_out=exact_tail and last)
        x = B.tap(x, s)
    gain = 1.0
    if exact_tail and a_bits < 32:
        gain = EXACT_TAIL_GAIN if tail_gain is None else float(tail_gain)
    logits = B.head(x, num_classes, int8_weights=exact_tail, kernel_gain=gain)
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
