"""Pass, subsample: int8 file bytes → bytes whose stride-2 spatial subsamples run as a 1×1 depthwise conv.

Why: the ``shortcut="zero_pad"`` blocks subsample their input with a STRIDED_SLICE of stride 2,
which XNNPACK does not take: each one splits the delegated graph (the int8-exact ResNet-20 ran as
3 delegate partitions, +~40 µs per image, ``benchmarks/results/tfmot_vs_ours.md``; a 1×1/2
MAX_POOL_2D is not taken either). A DEPTHWISE_CONV_2D 1×1, stride 2, VALID, weight 1 (scale 1,
zero point 0), bias 0, output scale and zero point = the input's computes
``zp + 1·((x − zp)·1 + 0)`` with a requantisation multiplier of exactly 1: every value is copied,
the outputs are bit-identical, and the whole graph stays one XNNPACK partition. Cost: C bytes of
weights + 4·C of bias per rewritten slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.records import Record


@dataclass(frozen=True, eq=False, kw_only=True)
class SubsampleRecord(Record):
    """``channels``: the channel count of each rewritten STRIDED_SLICE (graph order; empty: the
    bytes are unchanged); ``added_bytes``: weight + bias bytes the depthwise convs store."""
    channels: list[int]
    added_bytes: int


def subsample_as_depthwise(model_bytes: bytes) -> tuple[bytes, SubsampleRecord]:
    """Rewrite every NHWC ``STRIDED_SLICE`` that keeps every second row and column from 0 (begin 0,
    full end, strides [1, 2, 2, 1], no shrink/ellipsis/new-axis masks) of an int8 per-tensor tensor
    whose output has the same scale and zero point as a DEPTHWISE_CONV_2D 1×1/2 copying it exactly
    (see the module docstring). Other slices are left alone; no such slice: bytes unchanged."""
    s = F.schema()
    model, opname = F.read(model_bytes)
    g = model.subgraphs[0]
    channels, params = [], set()
    for op in g.operators:
        if opname(op) != "STRIDED_SLICE" or not _is_subsample(model, g, op):
            continue
        params.update(int(i) for i in op.inputs[1:])
        xt = g.tensors[int(op.inputs[0])]
        c, s_in = int(xt.shape[-1]), float(xt.quantization.scale[0])
        w = F.new_const(model, g, [1, 1, 1, c], F.INT8, np.ones(c, np.int8), 1.0)
        b = F.new_const(model, g, [c], F.INT32, np.zeros(c, np.int32), s_in)  # bias scale = s_in · s_w
        o = s.DepthwiseConv2DOptionsT()
        o.padding, o.strideW, o.strideH, o.depthMultiplier = s.Padding.VALID, 2, 2, 1
        o.dilationWFactor = o.dilationHFactor = 1
        op.opcodeIndex = F.opcode(model, s.BuiltinOperator.DEPTHWISE_CONV_2D, F.DEPTHWISE_INT8_VERSION)
        op.inputs = np.asarray([int(op.inputs[0]), w, b], np.int32)
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.DepthwiseConv2DOptions, o
        channels.append(c)
    read = {int(i) for op in g.operators for i in op.inputs}
    for i in params - read:  # the slices' begin/end/strides: no data left behind (compact drops the buffers)
        g.tensors[i].buffer = 0
    rec = SubsampleRecord(channels=channels, added_bytes=5 * sum(channels))
    return (F.write(model) if channels else model_bytes), rec


def _is_subsample(model, g, op) -> bool:
    if len(op.inputs) != 4:
        return False
    consts = [model.buffers[g.tensors[int(t)].buffer].data for t in op.inputs[1:]]
    if any(c is None or len(c) != 16 for c in consts):
        return False
    begin, _, strides = (np.frombuffer(bytes(c), np.int32).tolist() for c in consts)
    o = op.builtinOptions
    if strides != [1, 2, 2, 1] or any(begin) or o.beginMask != 15 or o.endMask != 15 \
            or o.shrinkAxisMask or o.ellipsisMask or o.newAxisMask:
        return False
    xt, yt = g.tensors[int(op.inputs[0])], g.tensors[int(op.outputs[0])]
    qx, qy = xt.quantization, yt.quantization
    if xt.type != F.INT8 or yt.type != F.INT8 or len(xt.shape) != 4 or qx is None or qy is None \
            or qx.scale is None or qy.scale is None or len(qx.scale) != 1 or len(qy.scale) != 1:
        return False
    # multiplier exactly 1 and the same zero point: the depthwise conv copies every value
    return (np.float32(qx.scale[0]) == np.float32(qy.scale[0]) and int(qx.zeroPoint[0]) == int(qy.zeroPoint[0])
            and [int(d) for d in yt.shape] == [int(xt.shape[0]), -(-int(xt.shape[1]) // 2),
                                               -(-int(xt.shape[2]) // 2), int(xt.shape[3])])
