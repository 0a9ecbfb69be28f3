"""The int4-weight variant: fp32 file bytes + plan → bytes whose ≤ 3-bit DoReFa conv/dense kernels
are stored as INT4 on their exact grid (weight-only: activations and arithmetic stay float32, a
DEQUANTIZE feeds each conv; this saves storage, not compute)."""
from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass

import numpy as np

from rolekd_tf.errors import ExportError
from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.plan import Plan, weight_layers
from rolekd_tf.export.records import Record


@dataclass(frozen=True, eq=False, kw_only=True)
class Int4Record(Record):
    """One INT4 tensor: the plan ``layer`` it stores (None: unmatched), whether its values are the
    exact grid (``int_values``, with ``folded_factor`` the converter's folded 1/n), and the values
    ai-edge-quantizer wrote before (``quantizer_int_values``)."""
    tensor: str
    layer: str | None
    exact_weights: bool
    quantizer_int_values: list[int]
    int_values: list[int] | None = None
    folded_factor: float | None = None


def w4_layers(plan: Plan, max_bits: int = 3) -> list[str]:
    """Layers whose DoReFa kernel fits an int4 grid exactly: 2 ≤ w_bits ≤ 3 (odd ints ≤ 7)."""
    return [k for k, v in weight_layers(plan).items() if 2 <= int(v.w_bits) <= max_bits]


def pack_int4(q: np.ndarray) -> np.ndarray:
    """TFLite INT4 packing: two values per byte, element 2i in the low nibble."""
    v = np.asarray(q, np.int64).reshape(-1)
    if v.size % 2:
        v = np.concatenate([v, [0]])
    nib = (v & 0x0F).astype(np.uint8)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    raw = np.asarray(raw, np.uint8)
    lo = (raw & 0x0F).astype(np.int8)
    hi = (raw >> 4).astype(np.int8)
    v = np.stack([lo, hi], -1).reshape(-1)[:count]
    v[v > 7] -= 16
    return v


def convert_w4(fp32_bytes: bytes, plan: Plan) -> tuple[bytes, list[Int4Record]]:
    """fp32 model with the ≤3-bit DoReFa conv/dense kernels stored as INT4 (weight-only).

    Route: ai-edge-quantizer weight-only int4 (per-channel) on the fp32 flatbuffer for exactly
    those layers, then the exact grid is written over its values: its symmetric max-based scale
    ``max|w|/7`` stores the 2-bit levels {±1/3, ±1} as {±2, ±7}·max/7 (1/3 → 2/7, measured), so
    the filters are rewritten as ``q = n·M·w`` (M = ⌊7/n⌋: k=2 → {±2, ±6}, k=3 → odd ±1…±7)
    with per-channel scale ``|c_j|/(n·M)``.
    """
    names = w4_layers(plan)
    if not names:
        raise ExportError("no layer has 2..3-bit DoReFa weights; the int4 variant would store nothing in int4")
    data = _quantize_int4(fp32_bytes, plan, names)
    fp32_filters = _float_filters(fp32_bytes)
    model, _ = F.read(data)
    records = []
    for g in model.subgraphs:
        for t in g.tensors:
            if t.type == F.INT4:
                records.append(_exact_int4(model, t, plan, names, fp32_filters.get(t.name)))
    return F.write(model), records


def _quantize_int4(fp32_bytes: bytes, plan: Plan, names: list[str]) -> bytes:
    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise ExportError("the int4 export needs the optional package ai-edge-quantizer: "
                          "pip install 'rolekd-tf[litert]'") from None
    rx = "|".join(re.escape(n) for n in names)
    q = quantizer.Quantizer(bytearray(fp32_bytes))
    for opn, kind in ((qtyping.TFLOperationName.CONV_2D, "conv"), (qtyping.TFLOperationName.FULLY_CONNECTED, "dense")):
        if any(plan[n].kind == kind for n in names):
            q.add_weight_only_config(regex=rf".*/({rx})(_\d+)?/.*", operation_name=opn, num_bits=4,
                                     granularity=qtyping.QuantGranularity.CHANNELWISE)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return bytes(q.quantize().quantized_model)
    except Exception as e:
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(f"ai-edge-quantizer failed on the int4 variant: {type(e).__name__}: {str(e)[:200]}") from None


def _float_filters(fp32_bytes: bytes) -> dict:
    """Tensor name → float32 constant of the fp32 file. The converter folds the 1/n of the
    preceding activation quantiser (round(n·x)/n) into the filters, so they are r_j × the plan's
    kernel (r_j = 1/n, measured)."""
    src, _ = F.read(fp32_bytes)
    out = {}
    for g in src.subgraphs:
        for t in g.tensors:
            if t.type == F.FLOAT32 and t.buffer and src.buffers[t.buffer].data is not None \
                    and len(src.buffers[t.buffer].data):
                out[t.name] = np.frombuffer(bytes(src.buffers[t.buffer].data), np.float32).reshape(
                    tuple(int(v) for v in t.shape))
    return out


def _exact_int4(model, t, plan: Plan, names: list[str], kf) -> Int4Record:
    """Rewrite INT4 tensor ``t`` with the exact grid of the plan layer its name and values match."""
    shape = tuple(int(s) for s in t.shape)
    qv = unpack_int4(np.asarray(model.buffers[t.buffer].data, np.uint8), int(np.prod(shape))).reshape(shape)
    rec = dict(tensor=F.name_of(t, "None"), layer=None, exact_weights=False,
               quantizer_int_values=sorted(int(v) for v in np.unique(qv)))
    for lname in sorted(names, key=len, reverse=True):
        info = plan[lname]
        kt = F.to_tflite_layout(info.kernel).astype(np.float64)
        if kf is None or kt.shape != shape or re.search(rf"/{re.escape(lname)}(_\d+)?/", rec["tensor"]) is None:
            continue
        rec["layer"] = lname
        kf64 = kf.astype(np.float64)
        flat_t, flat_f = kt.reshape(shape[0], -1), kf64.reshape(shape[0], -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.nanmedian(np.where(flat_t != 0, flat_f / flat_t, np.nan), axis=1)
        if not np.all(np.isfinite(r)) or np.max(np.abs(flat_f - r[:, None] * flat_t)) > 1e-5 * np.max(np.abs(flat_f)):
            break
        m = 7 // int(info.n)
        # exact per-channel scale |c_j|·r_j/(n·M), from the int8 plan's |c_j|/(n·⌊127/n⌋)
        st = np.abs(np.asarray(info.scale, np.float64) * (int(info.int_step) / m) * r)
        qf = kf64 / st.reshape((-1,) + (1,) * (len(shape) - 1))
        qq = np.round(qf)
        if np.max(np.abs(qf - qq)) < 1e-3 and np.max(np.abs(qq)) <= 7:
            model.buffers[t.buffer].data = pack_int4(qq)
            t.quantization.scale = st.astype(np.float32).tolist()
            t.quantization.zeroPoint = [0] * len(st)
            rec.update(exact_weights=True, int_values=sorted(int(v) for v in np.unique(qq)),
                       folded_factor=float(np.median(r)))
        break
    return Int4Record(**rec)
