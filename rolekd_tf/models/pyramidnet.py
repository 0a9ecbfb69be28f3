"""PyramidNet for CIFAR (Han, Kim & Kim, "Deep Pyramidal Residual Networks", CVPR 2017), additive
widening.

What this follows (the paper and its authors' PyTorch code, dyhan0920/PyramidNet-PyTorch, read to
check the details; not copied):

* Stem: 3×3 conv, 16 channels, stride 1, then BN (no ReLU: every block starts with BN).
* Three stages of ``n`` blocks at 32², 16², 8² (for 32×32 inputs). Basic blocks: depth = 6n + 2;
  bottleneck blocks (×4 output expansion): depth = 9n + 2.
* Additive widening (paper Eq. 2): block ``k = 1 … 3n`` (counted over the whole net) has
  ``D_k = ⌊16 + k·α/(3n)⌋`` channels (bottleneck: ``D_k`` inside, ``4·D_k`` out), i.e. α is added
  linearly over all blocks, not per stage. The floor is the paper's; the authors' later PyTorch
  code rounds to nearest instead, which gives up to one more channel per block (PyramidNet-200-240:
  26,752,702 parameters there vs 26,617,000 here). The floor reproduces the paper's parameter
  table (PyramidNet-110-48 1.7 M, PyramidNet-272-200 26.0 M; PyramidNet-200-240 26.6 M), so it is
  what we build.
* Block layout: basic ``BN → conv3×3 (stride) → BN → ReLU → conv3×3 → BN``; bottleneck
  ``BN → conv1×1 → BN → ReLU → conv3×3 (stride) → BN → ReLU → conv1×1 (4D) → BN``. No ReLU after
  the residual add and none at the block entry.
* Shortcut: identity, 2×2 average pool (stride 2) where the block downsamples, and zero channels
  **appended** (:class:`~rolekd_tf.models.layers.ChannelZeroPad`) where the width grows — no
  projection convs anywhere.
* Head: ``BN → ReLU → global average pool → dense``.
* Sizes (trainable parameters, CIFAR-10 head) are checked in tests/models/test_pyramidnet.py.

Names and registry: ``pyramidnet-<depth>-<alpha>``; below depth 164 basic blocks (depth 6n + 2),
from 164 on bottlenecks (depth 9n + 2), the paper's choice for its deep models; the suffix
``-bottleneck`` / ``-basic`` forces the block type (e.g. the tiny ``pyramidnet-11-12-bottleneck``).

Low bit width (our choice; the paper only uses PyramidNet as a full-precision teacher): every conv
except the stem uses ``w_bits``; the ReLUs inside the blocks are the ``a_bits`` activation
quantisers. The first conv of each block reads the FP BN output: PyramidNet has no ReLU there, and
a quantiser (which clips to [0, 1]) would add a non-linearity the full-precision net does not have.
The stem conv, final BN/ReLU and ``logits`` dense stay full precision.
KD taps: ``tap_s`` = the residual sum of the last block of stage ``s`` (as for the pre-activation
nets), plus ``logits``.
"""
from __future__ import annotations

import keras

from rolekd_tf.errors import ModelError
from rolekd_tf.models import _blocks as B
from rolekd_tf.models.layers import ChannelZeroPad

#: output channels per inner width
EXPANSION = {"basic": 1, "bottleneck": 4}


def _shortcut(x, out_ch: int, stride: int, name: str):
    sc = x
    if stride != 1:
        sc = keras.layers.AveragePooling2D(2, strides=2, padding="same", name=f"{name}_pool_shortcut")(sc)
    if sc.shape[-1] != out_ch:
        sc = ChannelZeroPad(out_ch, name=f"{name}_pad_shortcut")(sc)
    return sc


def pyramid_basic_block(x, width: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    """``BN → conv3×3 → BN → act → conv3×3 → BN`` + (pooled, zero-padded) identity."""
    y = B.basic_convs(B.bn(x, f"{name}_bn1"), width, stride, w_bits=w_bits, a_bits=a_bits, name=name)
    y = B.bn(y, f"{name}_bn3")
    return keras.layers.Add(name=f"{name}_add")([y, _shortcut(x, width, stride, name)])


def pyramid_bottleneck_block(x, width: int, stride: int, *, w_bits: int, a_bits: int, name: str):
    """``BN → conv1×1 → BN → act → conv3×3 → BN → act → conv1×1 (4·width) → BN`` + identity."""
    out_ch = EXPANSION["bottleneck"] * width
    y = B.bottleneck_convs(B.bn(x, f"{name}_bn1"), width, out_ch, stride, w_bits=w_bits,
                           a_bits=a_bits, name=name)
    y = B.bn(y, f"{name}_bn4")
    return keras.layers.Add(name=f"{name}_add")([y, _shortcut(x, out_ch, stride, name)])


def block_type_for(depth: int) -> str:
    """The default block type of PyramidNet-``depth``: basic below 164, bottleneck from 164 on."""
    return "bottleneck" if depth >= 164 else "basic"


def blocks_per_stage(depth: int, block: str) -> int:
    """``n`` for PyramidNet-``depth``: (depth − 2)/6 (basic) or (depth − 2)/9 (bottleneck); raises
    ModelError when ``depth`` does not fit the formula or n < 1."""
    per_block = 2 if block == "basic" else 3
    n, rest = divmod(int(depth) - 2, 3 * per_block)
    if rest or n < 1:
        raise ModelError(f"PyramidNet depth {depth} does not fit {block} blocks; allowed: "
                         f"{3 * per_block}n+2 with n >= 1 (e.g. "
                         f"{'8, 110' if block == 'basic' else '11, 200, 272'})")
    return n


def widths(depth: int, alpha: float, block: str) -> list[int]:
    """Inner width ``D_k`` of every block ``k = 1 … 3n`` in order: ⌊16 + k·α/(3n)⌋ (paper Eq. 2)."""
    n = blocks_per_stage(depth, block)
    # k·α/(3n) as an exact fraction: float division could floor 63.999… to 63
    return [16 + (k * int(alpha)) // (3 * n) for k in range(1, 3 * n + 1)]


def pyramidnet(depth: int, alpha: int, *, num_classes, w_bits=32, a_bits=32, input_shape=(32, 32, 3),
               block: str | None = None):
    """PyramidNet-``depth`` with widening factor ``alpha`` (``block``: ``"basic"`` |
    ``"bottleneck"``; None = :func:`block_type_for`). Input ``[B,H,W,C]`` normalised images,
    output logits ``[B, num_classes]``; taps ``tap_1..tap_3`` at the stage outputs."""
    block = block or block_type_for(depth)
    if block not in EXPANSION:
        raise ModelError(f"PyramidNet block={block!r} is not allowed; allowed: {', '.join(EXPANSION)}")
    if isinstance(alpha, bool) or int(alpha) != alpha or alpha < 0:
        raise ModelError(f"PyramidNet alpha={alpha!r} is invalid; allowed: an integer >= 0")
    n = blocks_per_stage(depth, block)
    block_fn = pyramid_basic_block if block == "basic" else pyramid_bottleneck_block
    ws = widths(depth, alpha, block)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    x = B.conv(inputs, 16, 3, 1, "stem_conv", w_bits=32)
    x = B.bn(x, "stem_bn")
    k = 0
    for s in range(1, 4):
        for b in range(1, n + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = block_fn(x, ws[k], stride, w_bits=w_bits, a_bits=a_bits, name=f"stage{s}_block{b}")
            k += 1
        x = B.tap(x, s)
    x = B.bn(x, "final_bn")
    x = B.relu(x, "final_relu")
    logits = B.head(x, num_classes)
    suffix = "" if block == block_type_for(depth) else f"-{block}"
    return keras.Model(inputs, logits, name=f"pyramidnet-{depth}-{int(alpha)}{suffix}")
