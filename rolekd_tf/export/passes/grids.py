"""Pass 2, exact weight grids: int8 file bytes + plan → bytes whose filters hold the exact
integer grids of the trained quantisers, plus one :class:`OpRecord` per conv/dense op.

Two steps (:func:`exact_grids` runs both):

* :func:`refine_quantiser_grids` re-stores each ≥ 3-bit quantiser output read by a conv on a finer
  int8 grid (so the bias pass below has room);
* :func:`exact_weights` writes each conv/dense filter the plan knows exactly: DoReFa levels
  ``n·M·w`` with per-channel scale ``|c_j|/(n·M)``, the stem's split integer filter, a merged
  conv2 + projection, per-channel scales for spread FP kernels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.plan import MergedConvPlan, Plan, WeightPlan, weight_layers
from rolekd_tf.export.records import Record

#: k-bit quantiser outputs with 2^k − 1 ≥ this are re-stored on a finer grid before each conv
FINE_GRID_MIN_LEVELS = 7
_CONV_OPS = ("CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True, eq=False, kw_only=True)
class RefinedGrid(Record):
    """Quantiser output ``tensor`` (scale 1/n) re-stored as ``fine_tensor`` (scale 1/(n·m))."""
    tensor: int
    fine_tensor: int
    n: int
    m: int
    consumers: tuple[str, ...]


@dataclass(frozen=True, eq=False, kw_only=True)
class OpRecord(Record):
    """One CONV_2D / FULLY_CONNECTED op of the int8 file, filled by the grids pass (weights) and
    the bias pass (``bias_*`` fields). ``layer``: the plan layer its filter matched (None: none).
    ``exact_scale``: the exact (float64) per-channel scale where the stored grid is exact (the
    file holds it rounded to float32), for the bias pass."""
    op: str
    op_index: int
    tensor_index: int
    tensor: str
    layer: str | None
    exact_weights: bool = False
    bias_fixed: bool = False
    int_values: list[int] | None = None
    stem_copies: int | None = None
    merged: list[str] | None = None
    proj_scale_rel_error: float | None = None
    per_channel: bool | None = None
    exact_scale: np.ndarray | None = None
    input_multiple: int | None = None
    bias_moved: int | None = None
    bias_channels: int | None = None
    bias_unfit_channels: int | None = None
    bias_unfit: list[int] | None = None
    scale_adjusted_channels: int | None = None
    max_scale_change: float | None = None


def exact_grids(model_bytes: bytes, plan: Plan, *, refine_levels: int | None = FINE_GRID_MIN_LEVELS):
    """``(bytes, [RefinedGrid], [OpRecord])``: :func:`refine_quantiser_grids` (skipped for
    ``refine_levels=None``) then :func:`exact_weights`."""
    refined = []
    if refine_levels is not None:
        model_bytes, refined = refine_quantiser_grids(model_bytes, refine_levels)
    data, ops = exact_weights(model_bytes, plan)
    return data, refined, ops


# ------------------------------------------------------------------------- finer input grids
def refine_quantiser_grids(model_bytes: bytes, min_levels: int = FINE_GRID_MIN_LEVELS) -> tuple[bytes, list[RefinedGrid]]:
    """Insert one int8→int8 QUANTIZE between each k-bit quantiser output (scale 1/n, n ≥
    ``min_levels``) and the CONV_2D / FULLY_CONNECTED ops reading it, storing level i as
    ``m·i − 128`` with scale ``1/(n·m)``, ``m = ⌊255/n⌋`` (17 at 4 bits).

    Why: the consumer's int32 accumulator then only takes multiples of ``m·g`` (g = gcd of its
    integer weights), so one integer bias per channel has ``m`` times the resolution relative to
    the lattice gaps and can keep every threshold decision of a ≥ 3-bit quantiser (at 4 bits with
    g = 8 alone it cannot, see :func:`~rolekd_tf.export.passes.bias.grid_bias`). The
    requantisation is exact (integer ratio m: no rounding). Residual adds, pads and slices keep
    reading the 1/n tensor. TF's converter folds a second fake-quant that only requantises, so the
    op is written into the flatbuffer.
    """
    s = F.schema()
    model, opname = F.read(model_bytes)
    found: dict[int, dict] = {}  # source tensor -> {fine_tensor, n, m, consumers}
    for g in model.subgraphs:
        new_ops, refined = [], {}
        for op in g.operators:
            if opname(op) in (*_CONV_OPS, "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
                src = int(op.inputs[0])
                n = F.grid_levels(g.tensors[src])
                if n is not None and n >= min_levels:
                    if src not in refined:
                        m = 255 // n
                        st = g.tensors[src]
                        fine = F.new_tensor(g, st, F.INT8, F.name_of(st, "t") + "/fine_grid",
                                            float(np.float32(1.0 / (n * m))), -128)
                        # right before its first consumer: topological order holds
                        new_ops.append(F.new_operator(model, s.BuiltinOperator.QUANTIZE, 1, [src], [fine]))
                        refined[src] = fine
                        found[src] = {"fine_tensor": fine, "n": n, "m": m, "consumers": []}
                    op.inputs = np.asarray(op.inputs, np.int32).copy()
                    op.inputs[0] = refined[src]
                    found[src]["consumers"].append(opname(op))
            new_ops.append(op)
        g.operators = new_ops
    records = [RefinedGrid(tensor=int(t), fine_tensor=v["fine_tensor"], n=v["n"], m=v["m"],
                           consumers=tuple(v["consumers"])) for t, v in found.items()]
    return F.write(model), records


# ------------------------------------------------------------------------------ exact filters
def exact_weights(model_bytes: bytes, plan: Plan) -> tuple[bytes, list[OpRecord]]:
    """Rewrite the int8 filters of conv/dense ops whose plan layer has an exact grid (see the
    module doc). Ops are matched to plan layers by shape and value (the converter's own weights
    are within half a quantisation step of the folded kernel). Biases are left to the bias pass."""
    model, opname = F.read(model_bytes)
    layers = weight_layers(plan)
    records = []
    for g in model.subgraphs:
        for op_index, op in enumerate(g.operators):
            name = opname(op)
            if name not in _CONV_OPS or len(op.inputs) < 2:
                continue
            xt, wt = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
            if wt.type != F.INT8 or xt.quantization is None or xt.quantization.scale is None:
                continue
            match = _match_layer(layers, F.int8_values(model, wt), np.asarray(wt.quantization.scale, np.float64))
            rec = dict(op=name, op_index=op_index, tensor_index=int(op.inputs[1]), tensor=F.name_of(wt, ""),
                       layer=match)
            info = layers.get(match)
            if info is not None:
                rec.update(_write_filter(model, wt, plan, info))
            records.append(OpRecord(**rec))
    return F.write(model), records


def _match_layer(layers: dict, wq: np.ndarray, ws: np.ndarray) -> str | None:
    deq = wq * ws.reshape((-1,) + (1,) * (wq.ndim - 1))
    for lname, info in layers.items():
        kt = F.to_tflite_layout(info.kernel)
        if kt.shape == deq.shape and np.max(np.abs(kt - deq)) <= 0.51 * ws.max() + 1e-7:
            return lname
    return None


def _write_filter(model, wt, plan: Plan, info) -> dict:
    """Write the exact filter of plan entry ``info`` into tensor ``wt``; the record fields."""
    bshape = (-1,) + (1,) * (len(wt.shape) - 1)
    if isinstance(info, WeightPlan) and info.copies:
        # first conv on pixels: integer filter Q at `copies`× the int8 resolution, split into
        # `copies` int8 parts (one per repetition of the input) that sum to Q
        kc = int(info.copies)
        kall = F.to_tflite_layout(np.asarray(info.kernel_all, np.float64))
        st = np.maximum(np.max(np.abs(kall.reshape(kall.shape[0], -1)), 1), 1e-30) / (127.0 * kc)
        st = st.astype(np.float32).astype(np.float64)
        qa = np.round(kall / st.reshape(bshape)).astype(np.int64)
        q = np.concatenate([np.floor_divide(qa + i, kc) for i in range(kc)], -1)
        assert tuple(q.shape) == tuple(wt.shape) and np.max(np.abs(q)) <= 127
        F.store_int8(model, wt, q, st)
        return {"stem_copies": kc}
    if isinstance(info, MergedConvPlan):
        q, st, err = merged_ints(plan, info)
        q = F.to_tflite_layout(q)
        assert tuple(q.shape) == tuple(wt.shape) and np.max(np.abs(q)) <= 127
        F.store_int8(model, wt, q, st)
        return {"exact_weights": True, "exact_scale": st, "merged": [info.main, info.proj],
                "proj_scale_rel_error": err, "int_values": sorted(int(v) for v in np.unique(q))}
    if info.fp_per_channel and info.scale is None:
        kt = F.to_tflite_layout(np.asarray(info.kernel, np.float64))
        st = np.maximum(np.max(np.abs(kt.reshape(kt.shape[0], -1)), 1), 1e-30) / 127.0
        st = st.astype(np.float32).astype(np.float64)
        F.store_int8(model, wt, np.clip(np.round(kt / st.reshape(bshape)), -127, 127), st)
        wt.quantization.quantizedDimension = 0
        return {"per_channel": True}
    if info.scale is not None:
        st = np.asarray(info.scale, np.float64)
        qf = F.to_tflite_layout(info.kernel).astype(np.float64) / st.reshape(bshape)
        q = np.round(qf)
        if np.max(np.abs(qf - q)) < 1e-3 and np.max(np.abs(q)) <= 127:
            F.store_int8(model, wt, q, st)
            return {"exact_weights": True, "exact_scale": st, "int_values": sorted(int(v) for v in np.unique(q))}
    return {}


def merged_ints(plan: Plan, info: MergedConvPlan):
    """Integer kernel (HWIO) and per-channel scale of a merged conv2 + 1×1 projection.

    Channel j: conv2 taps ``sign(c_j)·M_j·n·w`` and projection taps ``sign(p_j)·P_j·n·w'`` (both
    exact DoReFa levels, odd integers × M or P), scale ``|c_j|/(n·M_j)``; ``P_j/M_j`` is the best
    fraction with ``M_j, P_j ≤ ⌊127/n⌋`` for the BN-factor ratio ``|p_j/c_j|`` — the only
    approximation (returned: its largest relative error).
    """
    pm, pp = plan[info.main], plan[info.proj]
    n = int(pm.n)
    mmax = 127 // n
    wm = np.round(np.asarray(pm.dorefa, np.float64) * n).astype(np.int64)
    wp = np.round(np.asarray(pp.dorefa, np.float64) * n).astype(np.int64)
    cm, cp = np.asarray(pm.c, np.float64), np.asarray(pp.c, np.float64)
    kh, kw, ci, cout = wm.shape
    q = np.zeros((kh, kw, ci + wp.shape[2], cout), np.int64)
    st = np.zeros(cout)
    worst = 0.0
    for j in range(cout):
        if abs(cm[j]) < 1e-30:
            mm, pj, st[j] = 0, mmax, max(abs(cp[j]), 1e-30) / (n * mmax)
        else:
            e, mm, pj = _best_fraction(abs(cp[j] / cm[j]), mmax)
            worst = max(worst, e)
            st[j] = abs(cm[j]) / (n * mm)
        q[:, :, :ci, j] = np.sign(cm[j]) * mm * wm[..., j]
        q[kh // 2, kw // 2, ci:, j] = np.sign(cp[j]) * pj * wp[0, 0, :, j]
    return q, st, float(worst)


def _best_fraction(r: float, mmax: int):
    """``(relative error, M, P)``: P/M closest to ``r`` with 1 ≤ M ≤ mmax, 0 ≤ P ≤ mmax (ties: larger M)."""
    best = None
    for mm in range(1, mmax + 1):
        pj = int(min(max(round(r * mm), 0), mmax))
        e = abs(pj / mm - r) / max(r, 1e-30)
        if best is None or e < best[0] - 1e-12 or (abs(e - best[0]) <= 1e-12 and mm > best[1]):
            best = (e, mm, pj)
    return best
