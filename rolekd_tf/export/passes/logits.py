"""Pass 4, logits: int8 file bytes → bytes whose logits layer runs in 16x8 mode (int16 logits).

Why: an int8 logits tensor has 256 steps; a Keras top-2 gap below one step (weak models: 0.04) can
flip the class though every accumulator is exact. int16 makes the step ~60× finer even with the
4× wider range. Cost: ~0.2 kB and tiny non-XNNPACK ops (CAST and FC on 1 × C).

Where an int8 global pool would round the mean of an exact tail's levels (:func:`needs_exact_pool`:
a ≥ 3-bit tail, n·H·W > 255) the pool is made exact with int8 ops XNNPACK runs
(:class:`ExactPool`): a DEPTHWISE_CONV_2D of weight 1 sums a×b windows of levels exactly in int8
(n·a·b ≤ 255), and the logits FC, its int8 weights tiled over the P = H·W/(a·b) window positions,
adds the P partial sums in its accumulator. It replaces an int16 CAST + MEAN of the whole map
(≈ 36 µs of a ResNet-20's ≈ 440 µs, not run by XNNPACK) and gives the same logits bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.records import Record

#: the int16 logits' range is this many times the calibrated int8 logits range (no clipping)
LOGITS_INT16_WIDEN = 4.0


@dataclass(frozen=True, eq=False, kw_only=True)
class ExactPool(Record):
    """The exact global pool in front of the logits layer (:func:`int16_logits`, ``exact_pool``).

    ``values`` = H·W levels of 1/``levels`` are averaged per channel; ``window`` [a, b]: the
    DEPTHWISE_CONV_2D a×b / stride a×b (weights 1, multiplier exactly 1) summing them in int8
    ([1, 1]: none, the FC reads the level map itself); ``positions`` P = H·W/(a·b) partial sums per
    channel, added by the logits FC whose weights are tiled P times; ``scale``: the FC input's
    scale ``s_l/(H·W)`` (one level step of the mean, float32); ``added_bytes``: the depthwise
    weights + bias and the (P − 1) extra weight copies."""
    scale: float
    values: int
    levels: int
    window: list[int]
    positions: int
    added_bytes: int


@dataclass(frozen=True, eq=False, kw_only=True)
class LogitsRecord(Record):
    """``applied`` False (bytes unchanged): ``why``. Else the int16 logits ``step`` (and the
    int8 ``int8_step`` it replaces), their real ``range``/``int8_range``, and ``exact_pool``: the
    :class:`ExactPool` written in front of the logits layer (None: the pool stayed an int8 MEAN)."""
    applied: bool
    why: str | None = None
    dtype: str | None = None
    step: float | None = None
    int8_step: float | None = None
    range: list[float] | None = None
    int8_range: list[float] | None = None
    exact_pool: ExactPool | None = None

    def as_dict(self) -> dict:
        d = super().as_dict()
        if self.applied:  # report.json says "exact_pool": null when the pool stayed an int8 MEAN
            d.setdefault("exact_pool", None)
        return d


def needs_exact_pool(plan) -> bool:
    """True if the plan has an exact-tail global pool whose int8 output would be coarser than the
    mean of its levels (:class:`~rolekd_tf.export.plan.GridMeanPlan` with ``exact`` False: a ≥ 3-bit
    tail, n·H·W > 255). Only then does :func:`int16_logits` write the :class:`ExactPool` (tiled
    FC weights: (P − 1)·C·classes bytes more); where the int8 MEAN is already exact (2-bit tail:
    3·8·8 = 192 ≤ 255 levels) it gives the same logits. Without an exact tail the pool reads
    calibrated int8 activations, as a post-training-quantised file does."""
    return any(v.kind == "grid_mean" and not v.exact for v in plan.values())


def pool_window(levels: int, h: int, w: int) -> tuple[int, int]:
    """The window (a, b) of the exact pool's int8 partial sums: a | h, b | w, ``levels``·a·b ≤ 255
    (a sum of a·b values 0…``levels`` fits the int8 range above zero point −128), a·b largest
    (fewest positions P = h·w/(a·b) for the FC to add), ties broken towards square windows, then
    larger a. (1, 1) when no larger window fits."""
    fits = [(a, b) for a in range(1, h + 1) if h % a == 0 for b in range(1, w + 1)
            if w % b == 0 and levels * a * b <= 255]
    return max(fits, key=lambda ab: (ab[0] * ab[1], -abs(ab[0] - ab[1]), ab[0]))


def keep_int8_logits(model_bytes: bytes) -> tuple[bytes, LogitsRecord]:
    """The logits pass switched off (``--int8-logits``): bytes unchanged."""
    return model_bytes, LogitsRecord(applied=False, why="int8 logits requested")


def int16_logits(model_bytes: bytes, widen: float = LOGITS_INT16_WIDEN, *, exact_pool: bool = True,
                 bias=None) -> tuple[bytes, LogitsRecord]:
    """Compute the logits layer in 16x8 mode: the FULLY_CONNECTED whose output is dequantised into
    the float32 model output reads its int8 input through a CAST to int16 (zero point folded into
    the int64 bias: ``b + (−zp)·Σ_k w_jk``, exact), keeps its int8 weights and writes int16 logits
    (zero point 0, range ``widen``× the calibrated int8 range).

    ``exact_pool`` (default; the export asks for it only where :func:`needs_exact_pool`) and the
    FC's input written by a spatial MEAN of an int8 level map (scale 1/n, zero point −128, NHWC
    [N, H, W, C]) read by nothing else: the MEAN becomes an exact sum (:class:`ExactPool`):
    DEPTHWISE_CONV_2D a×b / stride a×b (:func:`pool_window`; weights 1 at scale 1, bias 0, output
    quantisation = input's, so each output is −128 + the integer sum of its a·b levels) → CAST to
    int16 (raw values) → the FC, whose int8 weights are tiled over the P window positions and whose
    input has the exact scale ``s/(H·W)`` — its accumulator is ``Σ_c w_jc·(Σ of the H·W levels)``,
    the zero point ``−128`` of each of the P·C inputs folded into the int64 bias. Any batch size
    (the FC flattens [N, H/a, W/b, C] to [N, P·C]). The FC's input scale, weight scales and int64
    accumulator are those of an int16 CAST + MEAN of the whole map, so the logits are too, bit
    for bit (at any H·W: the 1/(H·W) is in the input scale, the weight scales are unchanged).

    ``bias``: the layer's real bias (float, one per class; e.g. the plan's), re-quantised exactly
    at the exact pool's finer scale (int8 pool: at the FC's accumulator scale); without it the
    int32 bias is rescaled (keeping its rounding). The record says ``applied=False`` (bytes
    unchanged) when the graph does not end in FULLY_CONNECTED → DEQUANTIZE.
    """
    s = F.schema()
    model, opname = F.read(model_bytes)
    g = model.subgraphs[0]
    fc = _logits_fc(g, opname)
    if fc is None:
        return model_bytes, LogitsRecord(applied=False, why="no FULLY_CONNECTED → DEQUANTIZE → output at the end")
    xi, wi = int(fc.inputs[0]), int(fc.inputs[1])
    xt, wt, ot = g.tensors[xi], g.tensors[wi], g.tensors[int(fc.outputs[0])]
    if xt.type != F.INT8 or wt.type != F.INT8 or ot.type != F.INT8:
        return model_bytes, LogitsRecord(applied=False, why="the logits layer is not int8 → int8")
    s_x, zp_x = float(xt.quantization.scale[0]), int(xt.quantization.zeroPoint[0])
    s_o, zp_o = float(ot.quantization.scale[0]), int(ot.quantization.zeroPoint[0])
    w = F.int8_values(model, wt)
    sw = np.broadcast_to(np.asarray(wt.quantization.scale, np.float64), (w.shape[0],))
    site = _pool_site(model, g, opname, xi, fc) if exact_pool else None
    bt, b = _bias_of(g, model, fc, s_x * sw)
    pool = None
    if site is not None:
        # the bias was quantised at s_x·s_w; the exact pool has the finer scale s_l/(H·W)
        mean_op, lt, n = site
        hw = int(lt.shape[1]) * int(lt.shape[2])
        s_m = float(np.float32(float(lt.quantization.scale[0]) / hw))
        if bias is not None:
            b = np.round(np.asarray(bias, np.float64).reshape(-1) / (s_m * sw)).astype(np.int64)
        else:
            b = np.round(b * (s_x / s_m)).astype(np.int64)
        _set_bias_scale(bt, s_m, wt)
        pool = _write_exact_pool(model, g, mean_op, lt, n, fc, s_m)
        w = F.int8_values(model, wt)  # tiled: [classes, P·C]
        zp_x, s_x = int(lt.quantization.zeroPoint[0]), s_m  # each of the P·C raw partial sums is off by zp_l
    else:
        # the bias at the FC's own accumulator scale s_x·s_w, stored with exactly that scale: the
        # kernel refuses a bias scale more than 2 % of the (fine int16) output step away from it,
        # and the converter's stored bias scale can differ from s_x·s_w in the last float32 bits
        acc = (s_x * sw).astype(np.float32).astype(np.float64)
        if bias is not None:  # the real bias, as the exact pool does
            b = np.round(np.asarray(bias, np.float64).reshape(-1) / acc).astype(np.int64)
        else:
            old = np.broadcast_to(np.asarray(bt.quantization.scale, np.float64), acc.shape)
            b = np.round(b * (old / acc)).astype(np.int64)
        _set_bias_scale(bt, s_x, wt)
    b64 = b - zp_x * w.sum(axis=1)
    buf = s.BufferT()
    buf.data = np.frombuffer(b64.astype("<i8").tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    bt.buffer, bt.type = len(model.buffers) - 1, F.INT64

    if pool is None:
        fc.inputs = np.asarray(fc.inputs, np.int32).copy()
        fc.inputs[0] = _cast_to_int16(model, g, xi, s_x, before=fc)

    lo, hi = s_o * (-128 - zp_o), s_o * (127 - zp_o)
    step = float(np.float32(widen * max(abs(lo), abs(hi)) / 32767.0))
    ot.type = F.INT16
    ot.quantization.scale, ot.quantization.zeroPoint = [step], [0]
    rec = LogitsRecord(applied=True, dtype="int16", step=step, int8_step=s_o, range=[-32767 * step, 32767 * step],
                       int8_range=[lo, hi], exact_pool=pool)
    return F.write(model), rec


def _write_exact_pool(model, g, mean_op, lt, n: int, fc, s_m: float) -> ExactPool:
    """Turn ``mean_op`` (int8 level map ``lt`` [N, H, W, C] → the FC's input) into the exact
    pool: DEPTHWISE_CONV_2D a×b/a×b writing int8 partial sums (skipped for a 1×1 window), CAST
    of those to int16 into the MEAN's former output tensor (now [N, H/a, W/b, C], scale ``s_m``,
    zero point 0), the FC's weights tiled over the P positions. The FC's bias is the caller's."""
    s = F.schema()
    N, h, w, c = (int(d) for d in lt.shape)
    a, b = pool_window(n, h, w)
    p = (h // a) * (w // b)
    li, xi = int(mean_op.inputs[0]), int(mean_op.outputs[0])
    for i in mean_op.inputs[1:]:  # the reduction axes: no data left behind (compact drops the buffer)
        if all(op is mean_op for op in F.readers(g, int(i))):
            g.tensors[int(i)].buffer = 0
    added = 0
    if a * b > 1:
        s_l = float(lt.quantization.scale[0])
        wk = F.new_const(model, g, [1, a, b, c], F.INT8, np.ones(a * b * c, np.int8), 1.0)
        bk = F.new_const(model, g, [c], F.INT32, np.zeros(c, np.int32), s_l)  # bias scale = s_l · s_w
        o = s.DepthwiseConv2DOptionsT()
        o.padding, o.strideH, o.strideW, o.depthMultiplier = s.Padding.VALID, a, b, 1
        o.dilationHFactor = o.dilationWFactor = 1
        sums = F.new_tensor(g, lt, F.INT8, F.name_of(lt, "x") + "/window_sums", s_l, int(lt.quantization.zeroPoint[0]))
        g.tensors[sums].shape = np.asarray([N, h // a, w // b, c], np.int32)
        mean_op.opcodeIndex = F.opcode(model, s.BuiltinOperator.DEPTHWISE_CONV_2D, F.DEPTHWISE_INT8_VERSION)
        mean_op.inputs, mean_op.outputs = np.asarray([li, wk, bk], np.int32), np.asarray([sums], np.int32)
        mean_op.builtinOptionsType, mean_op.builtinOptions = s.BuiltinOptions.DepthwiseConv2DOptions, o
        cast = _cast_op(model, sums, xi)
        g.operators.insert(g.operators.index(mean_op) + 1, cast)
        added += a * b * c + 4 * c
    else:  # every window of two values would overflow: the FC reads the whole level map
        g.operators[g.operators.index(mean_op)] = _cast_op(model, li, xi)
    xt = g.tensors[xi]
    xt.type, xt.shape = F.INT16, np.asarray([N, h // a, w // b, c], np.int32)
    if xt.shapeSignature is not None and len(xt.shapeSignature):
        xt.shapeSignature = np.asarray([int(xt.shapeSignature[0]), h // a, w // b, c], np.int32)
    xt.quantization.scale, xt.quantization.zeroPoint = [s_m], [0]
    wt = g.tensors[int(fc.inputs[1])]
    tiled = np.tile(F.int8_values(model, wt), (1, p))  # input k = position·C + channel (NHWC flattened)
    buf = s.BufferT()
    buf.data = np.ascontiguousarray(tiled.astype(np.int8)).view(np.uint8).reshape(-1)
    model.buffers.append(buf)
    wt.buffer, wt.shape = len(model.buffers) - 1, np.asarray(tiled.shape, np.int32)
    if wt.shapeSignature is not None and len(wt.shapeSignature):
        wt.shapeSignature = np.asarray(tiled.shape, np.int32)
    added += (p - 1) * tiled.shape[0] * c
    return ExactPool(scale=s_m, values=h * w, levels=n, window=[a, b], positions=p, added_bytes=added)


def _logits_fc(g, opname):
    """The FULLY_CONNECTED whose output only a DEQUANTIZE into a model output reads, or None."""
    outs = {int(i) for i in g.outputs}
    fc = None
    for op in g.operators:
        if opname(op) == "DEQUANTIZE" and int(op.outputs[0]) in outs:
            prod = F.producers(g, int(op.inputs[0]))
            if prod and opname(prod[0]) == "FULLY_CONNECTED" and len(F.readers(g, int(op.inputs[0]))) == 1:
                fc = prod[0]
    return fc


def _set_bias_scale(bt, s_in: float, wt) -> None:
    """Store the bias scale ``s_in·s_w`` with as many entries as the weights have scales: a
    per-tensor weight needs a per-tensor bias scale, because the kernel compares the bias's
    per-tensor scale (0 when it holds several) with ``s_in·s_w`` to within 2 % of the output step."""
    sw = np.asarray(wt.quantization.scale, np.float64)
    bt.quantization.scale = (s_in * sw).astype(np.float32).tolist()
    bt.quantization.zeroPoint = [0] * len(sw)


def _bias_of(g, model, fc, scale):
    """``(bias tensor, int32 values as int64)`` of ``fc``; a zero bias of ``scale`` is added if it has none."""
    if len(fc.inputs) > 2 and int(fc.inputs[2]) >= 0:
        bt = g.tensors[int(fc.inputs[2])]
        return bt, np.frombuffer(bytes(model.buffers[bt.buffer].data), np.int32).astype(np.int64)
    s = F.schema()
    bt = s.TensorT()
    bt.shape = np.asarray([len(scale)], np.int32)
    bt.quantization = s.QuantizationParametersT()
    bt.quantization.scale = np.asarray(scale).astype(np.float32).tolist()
    bt.quantization.zeroPoint = [0] * len(scale)
    g.tensors.append(bt)
    fc.inputs = np.asarray(list(fc.inputs[:2]) + [len(g.tensors) - 1], np.int32)
    return bt, np.zeros(len(scale), np.int64)


def _cast_op(model, src: int, dst: int):
    """A ``CAST`` operator int8 tensor ``src`` → int16 tensor ``dst`` (values unchanged)."""
    s = F.schema()
    cast = F.new_operator(model, s.BuiltinOperator.CAST, 3, [src], [dst])  # v3: int8 input (lite/tools/versioning)
    cast.builtinOptionsType = s.BuiltinOptions.CastOptions
    cast.builtinOptions = s.CastOptionsT()
    cast.builtinOptions.inDataType, cast.builtinOptions.outDataType = F.INT8, F.INT16
    return cast


def _cast_to_int16(model, g, src: int, scale: float, *, before) -> int:
    """Add ``CAST`` int8 tensor ``src`` → a new int16 tensor (same values, ``scale``, zero point 0)
    before operator ``before``; returns the new tensor's index."""
    st = g.tensors[src]
    x16 = F.new_tensor(g, st, F.INT16, F.name_of(st, "x") + "/int16", scale, 0)
    g.operators.insert(g.operators.index(before), _cast_op(model, src, x16))
    return x16


def _pool_site(model, g, opname, xi: int, fc):
    """``(MEAN op, its input tensor, n)`` if the logits input ``xi`` is read by ``fc`` alone and
    written by a MEAN over axes 1 and 2 (keep_dims off) of an int8 NHWC level map of n levels
    (:func:`~rolekd_tf.export.flatbuf.grid_levels`: scale 1/n, zero point −128, so every value is
    0…n levels above −128) that nothing else reads; else None."""
    prod = F.producers(g, xi)
    if len(prod) != 1 or opname(prod[0]) != "MEAN" or F.readers(g, xi) != [fc]:
        return None
    mean_op = prod[0]
    li = int(mean_op.inputs[0])
    lt = g.tensors[li]
    n = F.grid_levels(lt)
    if n is None or len(lt.shape) != 4 or F.readers(g, li) != [mean_op] or len(mean_op.inputs) != 2:
        return None
    axes = model.buffers[g.tensors[int(mean_op.inputs[1])].buffer].data
    if axes is None or sorted(int(a) % 4 for a in np.frombuffer(bytes(axes), np.int32)) != [1, 2] \
            or getattr(mean_op.builtinOptions, "keepDims", False):
        return None
    return mean_op, lt, n
