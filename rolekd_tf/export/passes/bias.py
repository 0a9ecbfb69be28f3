"""Pass 3, bias fit: int8 file bytes + plan + the grids pass's records → bytes whose int32 biases
are quantised with the *actual* ``input_scale × filter_scale`` and, before k-bit quantisers, chosen
so that every rounding decision of the real bias is kept (:func:`grid_bias`).

Why the requantisation: TF 2.21's converter quantises a bias with the input's calibrated range when
the input comes out of a fake-quant op (measured: off by 255/n), which breaks the model.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.passes.grids import OpRecord
from rolekd_tf.export.plan import Plan, weight_layers

#: smallest feasible interval of output steps (relative) that :func:`grid_bias` uses: 25 % of it
#: must exceed the float32 rounding of the per-channel scale the new step is stored in
MIN_STEP_WIDTH = 1e-5


def fit_biases(model_bytes: bytes, plan: Plan, ops: list[OpRecord]) -> tuple[bytes, list[OpRecord]]:
    """Requantise the int32 bias of every op in ``ops`` (the records of
    :func:`~rolekd_tf.export.passes.grids.exact_weights` on these bytes); returns the new bytes
    and the records with their ``bias_*`` fields filled."""
    model, opname = F.read(model_bytes)
    layers = weight_layers(plan)
    g = model.subgraphs[0]
    out = []
    for rec in ops:
        op = g.operators[rec.op_index]
        bt = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        if bt is None or bt.type != F.INT32:
            out.append(rec)
            continue
        out.append(dataclasses.replace(rec, **_fit_one(model, g, opname, op, bt, rec, layers.get(rec.layer))))
    return F.write(model), out


def _fit_one(model, g, opname, op, bt, rec: OpRecord, info) -> dict:
    xt, wt = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    s_in = float(xt.quantization.scale[0])
    wq = F.int8_values(model, wt)
    ws = np.asarray(wt.quantization.scale, np.float64)
    if info is not None and info.bias is not None:
        b_real = np.asarray(info.bias, np.float64)
    else:
        bq = np.frombuffer(bytes(model.buffers[bt.buffer].data), np.int32).astype(np.float64)
        b_real = bq * np.asarray(bt.quantization.scale, np.float64)
    sb = s_in * ws
    bq_new = np.round(b_real / sb)
    fields = {}
    ot = g.tensors[op.outputs[0]]
    if info is not None and info.grid_out and rec.exact_weights \
            and ot.quantization is not None and ot.quantization.scale is not None:
        s_out = float(ot.quantization.scale[0])
        step0 = s_out / sb
        qonly = {}
        if info.kind == "exact_stem":
            # int8-exact stem: integer weights with gcd 1 (every accumulator value is reachable)
            # and only quantisers downstream: keep the decisions of the quantiser's thresholds
            # (i + ½)/n, i < n, on the integer lattice
            qonly = {"halves": np.arange(int(round(1.0 / s_out))) + 0.5, "min_g": 1}
        mult = input_multiple(g, opname, int(op.inputs[0]))
        if mult > 1:
            fields["input_multiple"] = mult
        # Keras' thresholds from the exact scales (levels i/n, exact float64 weight scales), the
        # file's from its float32-stored ones: on accumulators ~1e5 the 6e-8 relative difference
        # is ~1e-2 units, more than some thresholds' margin
        sb_x = exact_scale(s_in) * (ws if rec.exact_scale is None else np.asarray(rec.exact_scale, np.float64))
        bq_new, new_step, moved, unfit = grid_bias(b_real / sb_x, wq, exact_scale(s_out) / sb_x, s_out,
                                                   in_mult=mult, step_file=step0, **qonly)
        fields.update(bias_moved=moved, bias_channels=int(len(bq_new)), bias_unfit_channels=len(unfit),
                      bias_unfit=unfit)
        adj = new_step != step0
        if np.any(adj):  # per-channel scale nudged so an integer bias fits (see grid_bias)
            ws = np.where(adj, s_out / (s_in * new_step), ws).astype(np.float32).astype(np.float64)
            wt.quantization.scale = ws.astype(np.float32).tolist()
            sb = s_in * ws
            fields.update(scale_adjusted_channels=int(np.sum(adj)),
                          max_scale_change=float(np.max(np.abs(new_step / step0 - 1))))
    bq_new = np.clip(bq_new, -(2**31) + 1, 2**31 - 1).astype(np.int32)
    model.buffers[bt.buffer].data = np.ascontiguousarray(bq_new).view(np.uint8).reshape(-1)
    bt.quantization.scale = sb.astype(np.float32).tolist()
    bt.quantization.zeroPoint = [0] * len(sb)
    fields["bias_fixed"] = True
    return fields


def grid_bias(beta, wq, step, s_out: float, *, halves=None, min_g: int = 2, in_mult: int = 1,
               step_file=None):
    """Integer biases (and, where needed, a slightly changed output step) that keep every rounding
    decision of the exact real bias ``beta``.

    Per output channel ``j`` the int32 accumulator takes only multiples of ``g_j`` (gcd of the
    channel's integer weights; the inputs are integer levels) and is rounded to multiples of
    ``step_j`` accumulator units (= output scale). The decisions that matter are at the thresholds
    ``θ_i = (i + ½)·step_j`` whose real value ``(i + ½)·s_out`` lies in ``[−1 − 1.5·s_out,
    1 + 1.5·s_out]`` (inputs of k-bit quantisers, or residual inputs of such quantisers). A
    threshold keeps its decisions iff its integer-arithmetic position ``(i + ½)·step' − B`` stays
    strictly inside the lattice gap ``(P_i, P_i + g)`` that holds ``θ_i − beta``. First ``step' =
    step`` and the integer ``B`` in the middle of the feasible interval; if no integer fits, the
    step is changed too (a relative change ~g/step, i.e. ~1e-3: the weights' per-channel scale
    moves by that, the decisions on the reachable accumulators do not), choosing the ``(B, step')``
    with the widest margin. Returns ``(B, step', channels moved, unfit channel indices)``; an unfit
    channel (no integer ``B`` near ``beta`` with any ``step'`` keeps every decision) keeps the
    plain rounding ``B = round(beta)``.

    ``halves`` (default: every ``i + ½`` in the range above) overrides the thresholds, in output
    steps; channels whose weight gcd is below ``min_g`` (default 2: gcd 1 is left to plain rounding)
    are skipped. ``in_mult``: the integer inputs are all multiples of it (a refined quantiser
    output, :func:`~rolekd_tf.export.passes.grids.refine_quantiser_grids`), so the lattice step is ``in_mult·g_j``.
    ``step_file``: the file's own output step (accumulator units) where it differs from Keras'
    exact ``step`` (float32-stored scales); the bias ``B`` and the returned step are in the file's
    terms, the thresholds to keep are Keras' (default: the same).
    """
    beta = np.asarray(beta, np.float64).reshape(-1)
    step = np.broadcast_to(np.asarray(step, np.float64).reshape(-1), beta.shape).copy()
    sf = step.copy() if step_file is None else np.broadcast_to(
        np.asarray(step_file, np.float64).reshape(-1), beta.shape).copy()
    w2 = np.abs(np.asarray(wq, np.int64).reshape(len(beta), -1))
    out = np.round(beta * sf / step)
    new_step = sf.copy()
    lv = int(np.ceil(1.0 / s_out)) + 2
    half = np.arange(-lv, lv) + 0.5
    half = half[np.abs(half * s_out) <= 1.0 + 1.5 * s_out]
    if halves is not None:
        half = np.asarray(halves, np.float64)
    moved, unfit = 0, []
    for j in range(len(beta)):
        g = int(np.gcd.reduce(w2[j])) * int(in_mult) if w2[j].any() else 0
        if g < max(int(min_g), 1) or not np.isfinite(step[j]) or step[j] <= 0:
            continue
        pos = half * step[j] - beta[j]          # Keras' threshold positions on the accumulator
        base = np.floor(pos / g) * g            # lattice point below each
        # the file's threshold h·sf − B must stay strictly inside (base, base + g)
        t = half * sf[j] - base
        lo, hi = float(np.max(t)) - g, float(np.min(t))
        cand = np.arange(np.ceil(lo), np.floor(hi) + 1)
        cand = cand[(cand > lo) & (cand < hi)]
        if len(cand):
            mid = (lo + hi) / 2
            out[j] = cand[np.argmin(np.abs(cand - mid))]
        else:
            # need P_i < half_i·D − B < P_i + g for all i: for each integer B near beta the
            # feasible D is an interval; take the widest (relative to the gaps) closest to step
            best = None
            span = g // 2 + 1 if g > 1 else 64  # gcd 1 (exact stem): search more integer biases
            for bb in out[j] + np.arange(-span, span + 1):
                lo_d, hi_d = -np.inf, np.inf
                for h, p in zip(half, base):
                    a_, b_ = (p + bb) / h, (p + g + bb) / h
                    a_, b_ = min(a_, b_), max(a_, b_)
                    lo_d, hi_d = max(lo_d, a_), min(hi_d, b_)
                # the new step is stored through a float32 scale (relative error ≤ 6e-8): an
                # interval narrower than MIN_STEP_WIDTH of the step would not survive that
                if hi_d - lo_d > MIN_STEP_WIDTH * sf[j]:
                    d = min(max(sf[j], lo_d + 0.25 * (hi_d - lo_d)), hi_d - 0.25 * (hi_d - lo_d))
                    width = (hi_d - lo_d) / sf[j]
                    key = (abs(d - sf[j]) / sf[j] - width, )
                    if best is None or key < best[0]:
                        best = (key, bb, d)
            if best is None:
                unfit.append(j)
                continue
            out[j], new_step[j] = best[1], best[2]
        moved += int(out[j] != np.round(beta[j] * sf[j] / step[j]) or new_step[j] != sf[j])
    return out, new_step, moved, unfit


def input_multiple(g, opname, tensor_index: int) -> int:
    """m if tensor ``tensor_index`` is written by an int8→int8 QUANTIZE from a tensor of an integer
    ``m`` times its scale (zero points −128): its values are m·i − 128 (see
    :func:`~rolekd_tf.export.passes.grids.refine_quantiser_grids`); else 1."""
    for op in g.operators:
        if tensor_index in list(op.outputs):
            if opname(op) != "QUANTIZE":
                return 1
            a, b = g.tensors[op.inputs[0]], g.tensors[tensor_index]
            if a.type != F.INT8 or F.grid_levels(a) is None:
                return 1
            r = float(a.quantization.scale[0]) / float(b.quantization.scale[0])
            m = int(round(r))
            return m if m >= 1 and abs(r - m) < 1e-4 and int(b.quantization.zeroPoint[0]) == -128 else 1
    return 1


def exact_scale(s: float) -> float:
    """``1/m`` if the float32-stored scale ``s`` is 1/m for an integer m (a level grid, 1/64 of the
    exact stem's input), else ``s``."""
    m = round(1.0 / s) if s > 0 else 0
    return 1.0 / m if m >= 1 and abs(s * m - 1.0) < 1e-6 else float(s)
