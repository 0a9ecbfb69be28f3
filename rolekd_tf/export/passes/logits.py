"""Pass 4, logits: int8 file bytes → bytes whose logits layer runs in 16x8 mode (int16 logits).

Why: an int8 logits tensor has 256 steps; a Keras top-2 gap below one step (weak models: 0.04) can
flip the class though every accumulator is exact. int16 makes the step ~60× finer even with the
4× wider range. Cost: ~0.2 kB and tiny non-XNNPACK ops (CAST and FC on 1 × C; an int16 MEAN of
the last feature map, ~40 µs, only where the int8 pool would be inexact: :func:`needs_int16_pool`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.records import Record

#: the int16 logits' range is this many times the calibrated int8 logits range (no clipping)
LOGITS_INT16_WIDEN = 4.0


@dataclass(frozen=True, eq=False, kw_only=True)
class LogitsRecord(Record):
    """``applied`` False (bytes unchanged): ``why``. Else the int16 logits ``step`` (and the
    int8 ``int8_step`` it replaces), their real ``range``/``int8_range``, and ``int16_pool``:
    ``{"scale", "values"}`` of the int16 global pool (None: the pool stayed int8)."""
    applied: bool
    why: str | None = None
    dtype: str | None = None
    step: float | None = None
    int8_step: float | None = None
    range: list[float] | None = None
    int8_range: list[float] | None = None
    int16_pool: dict | None = None

    def as_dict(self) -> dict:
        d = super().as_dict()
        if self.applied:  # report.json says "int16_pool": null when the pool stayed int8
            d.setdefault("int16_pool", None)
        return d


def needs_int16_pool(plan) -> bool:
    """True if the plan has an exact-tail global pool whose int8 output would be coarser than the
    mean of its levels (:class:`~rolekd_tf.export.plan.GridMeanPlan` with ``exact`` False: a ≥ 3-bit
    tail, n·H·W > 255). Only then does :func:`int16_logits` pool in int16: the int16 CAST + MEAN
    are not run by XNNPACK (measured +36–44 µs of a ResNet-20's ~450), and where the int8 pool is
    already exact (2-bit tail: 3·8·8 = 192 ≤ 255 levels) it gives the same logits. Without an exact
    tail the pool reads calibrated int8 activations, as a post-training-quantised file does."""
    return any(v.kind == "grid_mean" and not v.exact for v in plan.values())


def keep_int8_logits(model_bytes: bytes) -> tuple[bytes, LogitsRecord]:
    """The logits pass switched off (``--int8-logits``): bytes unchanged."""
    return model_bytes, LogitsRecord(applied=False, why="int8 logits requested")


def int16_logits(model_bytes: bytes, widen: float = LOGITS_INT16_WIDEN, *, int16_pool: bool = True,
                 bias=None) -> tuple[bytes, LogitsRecord]:
    """Compute the logits layer in 16x8 mode: the FULLY_CONNECTED whose output is dequantised into
    the float32 model output reads its int8 input through a CAST to int16 (zero point folded into
    the int64 bias: ``b + (−zp)·Σ_k w_jk``, exact), keeps its int8 weights and writes int16 logits
    (zero point 0, range ``widen``× the calibrated int8 range).

    ``int16_pool`` (default; the export asks for it only where :func:`needs_int16_pool`) and the
    FC's input written by a global MEAN of an int8 tensor (H·W ≤
    255): the CAST moves before the MEAN, which then sums the raw int8 values in int16 at the exact
    scale ``s/(H·W)`` — the pool is exact at any bit width (an int8 pool of a 4-bit 8×8 map has
    only 1/4 of the resolution of the mean of its 960 level steps); the zero point ``H·W·zp`` is
    folded into the int64 bias, the bias re-expressed at the finer scale. ``bias``: the layer's
    real bias (float, one per class; e.g. the plan's), re-quantised exactly at the int16 pool's
    finer scale (int8 pool: at the FC's accumulator scale); without it the int32 bias is rescaled
    (keeping its rounding). The record says
    ``applied=False`` (bytes unchanged) when the graph does not end in FULLY_CONNECTED → DEQUANTIZE.
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
    pool = _int16_pool_site(g, opname, xi, fc) if int16_pool else None
    bt, b = _bias_of(g, model, fc, s_x * sw)
    if pool is not None:
        # the bias was quantised at s_x·s_w; the int16 pool has the finer scale s_l/(H·W) and the
        # effective zero point H·W·zp_l (it sums the raw int8 values, zero point included)
        mean_op, lt, hw = pool
        s_l, zp_l = float(lt.quantization.scale[0]), int(lt.quantization.zeroPoint[0])
        s_m = float(np.float32(s_l / hw))
        if bias is not None:
            b = np.round(np.asarray(bias, np.float64).reshape(-1) / (s_m * sw)).astype(np.int64)
        else:
            b = np.round(b * (s_x / s_m)).astype(np.int64)
        _set_bias_scale(bt, s_m, wt)
        zp_x, s_x = hw * zp_l, s_m
    else:
        # the bias at the FC's own accumulator scale s_x·s_w, stored with exactly that scale: the
        # kernel refuses a bias scale more than 2 % of the (fine int16) output step away from it,
        # and the converter's stored bias scale can differ from s_x·s_w in the last float32 bits
        acc = (s_x * sw).astype(np.float32).astype(np.float64)
        if bias is not None:  # the real bias, as the int16 pool does
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
    else:
        # CAST the pooled int8 levels to int16 (raw values, zero point 0), MEAN in int16 at the
        # exact scale s_l/(H·W) (its output is the integer sum of H·W values: no rounding), and
        # the FC reads that int16 tensor directly
        mean_op, lt, hw = pool
        mean_op.inputs = np.asarray(mean_op.inputs, np.int32).copy()
        mean_op.inputs[0] = _cast_to_int16(model, g, int(mean_op.inputs[0]), float(lt.quantization.scale[0]),
                                           before=mean_op)
        mean_op.opcodeIndex = F.opcode(model, s.BuiltinOperator.MEAN, 3)  # v3: int16 (lite/tools/versioning)
        xt.type = F.INT16
        xt.quantization.scale, xt.quantization.zeroPoint = [s_x], [0]

    lo, hi = s_o * (-128 - zp_o), s_o * (127 - zp_o)
    step = float(np.float32(widen * max(abs(lo), abs(hi)) / 32767.0))
    ot.type = F.INT16
    ot.quantization.scale, ot.quantization.zeroPoint = [step], [0]
    rec = LogitsRecord(applied=True, dtype="int16", step=step, int8_step=s_o, range=[-32767 * step, 32767 * step],
                       int8_range=[lo, hi], int16_pool=None if pool is None else {"scale": s_x, "values": int(pool[2])})
    return F.write(model), rec


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


def _cast_to_int16(model, g, src: int, scale: float, *, before) -> int:
    """Add ``CAST`` int8 tensor ``src`` → a new int16 tensor (same values, ``scale``, zero point 0)
    before operator ``before``; returns the new tensor's index."""
    s = F.schema()
    st = g.tensors[src]
    x16 = F.new_tensor(g, st, F.INT16, F.name_of(st, "x") + "/int16", scale, 0)
    cast = F.new_operator(model, s.BuiltinOperator.CAST, 3, [src], [x16])  # v3: int8 input (lite/tools/versioning)
    cast.builtinOptionsType = s.BuiltinOptions.CastOptions
    cast.builtinOptions = s.CastOptionsT()
    cast.builtinOptions.inDataType, cast.builtinOptions.outDataType = F.INT8, F.INT16
    g.operators.insert(g.operators.index(before), cast)
    return x16


def _int16_pool_site(g, opname, xi: int, fc):
    """``(MEAN op, its int8 input tensor, H·W)`` if the logits input ``xi`` is written by a spatial
    MEAN of an int8 per-tensor-quantised NHWC tensor read by nothing else, with H·W·128 < 2^15
    (the int16 sum of H·W raw int8 values cannot overflow); else None."""
    prod = F.producers(g, xi)
    if len(prod) != 1 or opname(prod[0]) != "MEAN":
        return None
    mean_op = prod[0]
    lt = g.tensors[int(mean_op.inputs[0])]
    q = lt.quantization
    if F.readers(g, xi) != [fc] or lt.type != F.INT8 or len(lt.shape) != 4 or q is None or q.scale is None \
            or len(q.scale) != 1:
        return None
    hw = int(lt.shape[1]) * int(lt.shape[2])
    return (mean_op, lt, hw) if 0 < hw * 128 < 2**15 else None
