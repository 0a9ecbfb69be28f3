"""TFLite conversion (fp32, full-integer int8), flatbuffer inspection and the interpreter runner."""
from __future__ import annotations

import os
import re
import time

import numpy as np

from rolekd_tf.errors import ExportError

#: TFLite schema TensorType enum → name (tensorflow/lite/schema/schema.fbs).
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
                11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
                16: "uint16", 17: "int4", 18: "bfloat16"}


def _tf():
    import tensorflow as tf

    return tf


def _concrete_function(view):
    tf = _tf()
    shape = [None, *[int(d) for d in view.input_shape[1:]]]
    fn = tf.function(lambda x: view(x, training=False))
    return fn.get_concrete_function(tf.TensorSpec(shape, tf.float32, name="pixels"))


def _layer_names(model) -> list[str]:
    names = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):  # a nested model: its layers, not its own name
            names.extend(_layer_names(layer))
        else:
            names.append(layer.name)
    return names


def _graph_op_names(fn, types) -> list[str]:
    """Names of the ops of ``types`` in a concrete function (and the functions it calls)."""
    out = []
    try:
        graphs = [fn.graph] + [f.graph for f in getattr(fn.graph, "_functions", {}).values() if hasattr(f, "graph")]
    except Exception:
        graphs = [fn.graph]
    for g in graphs:
        for op in g.get_operations():
            if op.type in types:
                out.append(op.name)
    return out


def _explain(e: Exception, model, fn=None) -> str:
    """One line naming the Keras layer(s) whose ops the converter could not lower."""
    msg = str(e)
    ops0 = set(re.findall(r"'tf\.([A-Za-z0-9_]+)'", msg))
    if fn is not None and ops0:  # the converter's message names the op type, the graph names the layer
        msg += " " + " ".join("/" + n + "/" for n in _graph_op_names(fn, ops0))
    names = sorted(set(_layer_names(model)), key=len, reverse=True)
    hits = []
    for n in names:
        if re.search(rf"/{re.escape(n)}(_\d+)?/", msg) and not any(n in h for h in hits):
            hits.append(n)
    ops = set(re.findall(r"'tf\.([A-Za-z0-9_]+)'", msg)) | set(re.findall(r'fused\["([A-Za-z0-9_]+):', msg))
    ops = sorted(o for o in ops if o not in ("PartitionedCall", "StatefulPartitionedCall"))
    what = f"op(s) {', '.join(ops[:5])}" if ops else "an op"
    where = f"layer(s) {', '.join(repr(h) for h in hits[:5])}" if hits else "an unnamed layer"
    return f"the TFLite converter cannot lower {what} in {where} of model {model.name!r}; replace that layer or export the other formats"


def _convert(converter, view, fn=None) -> bytes:
    try:
        return converter.convert()
    except Exception as e:  # ConverterError and friends: map op names back to layers
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(_explain(e, view, fn)) from None


def convert_fp32(view) -> bytes:
    """Float32 TFLite flatbuffer of an export view (``mode="float"``)."""
    tf = _tf()
    fn = _concrete_function(view)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], view)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _convert(conv, view, fn)


def convert_int8(view, representative, *, input_type: str = "uint8", per_channel: bool = False) -> bytes:
    """Full-integer TFLite flatbuffer of an export view (``mode="int8"``).

    ``representative``: float32 pixel batches ``(n, H, W, 3)`` in [0, 255] (training split) used to
    calibrate every tensor without a fake-quant range. All ops are int8 builtins; the input is
    ``input_type`` (uint8 pixels, scale 1, zero point 0 — or int8, zero point −128); the output is
    the float32 logits (one dequantize at the end). ``per_channel=False`` (default): the converter
    quantises every kernel per tensor and :func:`fix_int8_model` writes per-channel scales where
    the plan asks for them (exact DoReFa layers, the stem, FP layers with a channel spread > 2).
    """
    tf = _tf()
    rep = np.asarray(representative, np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    fn = _concrete_function(view)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], view)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8}[input_type]
    conv.inference_output_type = tf.float32
    if not per_channel:
        conv._experimental_disable_per_channel = True
    return _convert(conv, view, fn)


# ------------------------------------------------------------------------------- inspection
def flatbuffer_tensor_types(model_bytes: bytes) -> dict[str, dict]:
    """Name → {type, buffer_bytes} read from the flatbuffer itself (not the interpreter)."""
    from tensorflow.lite.python import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(model_bytes, 0)
    out = {}
    for si in range(m.SubgraphsLength()):
        g = m.Subgraphs(si)
        for ti in range(g.TensorsLength()):
            t = g.Tensors(ti)
            buf = m.Buffers(t.Buffer())
            nbytes = buf.DataLength() if buf is not None else 0
            if nbytes == 0 and buf is not None and buf.Size():
                nbytes = int(buf.Size())
            name = t.Name().decode() if t.Name() else f"t{ti}"
            out[name] = {"type": TENSOR_TYPES.get(t.Type(), str(t.Type())), "buffer_bytes": int(nbytes),
                         "shape": [int(t.Shape(j)) for j in range(t.ShapeLength())], "index": ti, "subgraph": si}
    return out


def runtime_name() -> str:
    """``"ai_edge_litert <version>"`` (LiteRT, the runtime embedded targets ship) or, where that
    package is missing, ``"tf.lite <tf version>"`` (TF's deprecated copy of the same interpreter)."""
    try:
        import ai_edge_litert

        return f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:
        return f"tf.lite {_tf().__version__}"


def interpreter(model_bytes_or_path, num_threads: int = 1, **options):
    """An allocated LiteRT interpreter (``ai_edge_litert``; TF's ``tf.lite.Interpreter`` only where
    LiteRT is not installed) for a ``.tflite`` file path or its bytes.

    The inspection helpers below read op details through the interpreter's ``_get_ops_details``:
    neither runtime has a public per-op API, and the alternative (walking the flatbuffer schema,
    as ``flatbuffer_tensor_types`` does for tensors) would duplicate the interpreter's own view.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = _tf().lite.Interpreter
    kw = {"model_content": bytes(model_bytes_or_path)} if isinstance(model_bytes_or_path, (bytes, bytearray)) \
        else {"model_path": str(model_bytes_or_path)}
    interp = Interpreter(num_threads=num_threads, **kw, **options)
    interp.allocate_tensors()
    return interp


def weight_tensors(interp) -> list[dict]:
    """Constant weight tensors (conv/dense filters) with dtype, quantisation and values."""
    out = []
    ops = interp._get_ops_details()
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        if len(op["inputs"]) < 2:
            continue
        idx = int(op["inputs"][1])
        producer = next((o for o in ops if idx in list(o["outputs"])), None)
        if producer is not None and producer["op_name"] == "DEQUANTIZE":
            idx = int(producer["inputs"][0])  # weight-only variants: the stored (int4/int8) tensor
        d = next(t for t in interp.get_tensor_details() if t["index"] == idx)
        try:
            values = interp.get_tensor(idx)
        except ValueError:
            values = None
        q = d.get("quantization_parameters", {})
        out.append({"op": op["op_name"], "op_index": int(op["index"]), "index": idx, "name": d["name"],
                    "dtype": np.dtype(d["dtype"]).name, "shape": list(d["shape"]), "values": values,
                    "scales": np.asarray(q.get("scales", [])), "zero_points": np.asarray(q.get("zero_points", [])),
                    "quantized_dimension": int(q.get("quantized_dimension", 0))})
    return out


def run(interp, pixels: np.ndarray, *, batch: int = 1) -> np.ndarray:
    """Logits for ``pixels`` (N,H,W,3, values 0..255) one batch at a time."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    dtype = inp["dtype"]
    x = np.asarray(pixels)
    if dtype == np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    elif dtype == np.int8:
        s, zp = inp["quantization"]
        x = np.clip(np.round(np.asarray(x, np.float64) / s + zp), -128, 127).astype(np.int8)
    else:
        x = x.astype(np.float32)
    res = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if tuple(interp.get_input_details()[0]["shape"]) != xb.shape:
            interp.resize_tensor_input(inp["index"], list(xb.shape))
            interp.allocate_tensors()
        interp.set_tensor(inp["index"], xb)
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            s, zp = out["quantization"]
            y = (y - zp) * s
        res.append(y.copy())
    return np.concatenate(res, 0)


def latency_ms(interp, pixel: np.ndarray, *, repeats: int = 50, warmup: int = 5) -> float:
    """Median single-image ``invoke`` wall time in ms."""
    run(interp, pixel[:1])
    inp = interp.get_input_details()[0]
    x = pixel[:1]
    if inp["dtype"] == np.uint8:
        x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    elif inp["dtype"] == np.int8:
        s, zp = inp["quantization"]
        x = np.clip(np.round(np.asarray(x, np.float64) / s + zp), -128, 127).astype(np.int8)
    else:
        x = x.astype(np.float32)
    interp.set_tensor(inp["index"], x)
    for _ in range(warmup):
        interp.invoke()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        interp.invoke()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


# ---------------------------------------------------------------------- exact int8 weights
#: k-bit quantiser outputs with 2^k − 1 ≥ this are re-stored on a finer grid before each conv
FINE_GRID_MIN_LEVELS = 7


def _to_tflite_layout(kernel: np.ndarray) -> np.ndarray:
    if kernel.ndim == 4:  # HWIO -> OHWI
        return np.transpose(kernel, (3, 0, 1, 2))
    return kernel.T  # (in, out) -> (out, in)


def fix_int8_model(model_bytes: bytes, plan: dict, *,
                   refine_levels: int | None = FINE_GRID_MIN_LEVELS) -> tuple[bytes, list[dict]]:
    """Rewrite the int8 filters and int32 biases of conv/dense ops so that

    * every DoReFa layer (``plan[name]["scale"]``) stores ``n·w_dorefa`` (odd integers −n…n) with
      per-channel scale ``|c_j|/n`` — exactly the DoReFa levels (times the folded BN factor);
    * every bias is quantised with ``input_scale × filter_scale`` of the *actual* input tensor
      (TF 2.21's converter quantises a bias with the input's calibrated range when the input comes
      out of a fake-quant op — measured: off by 255/n — which breaks the model).

    Ops are matched to layers by shape and value (the converter's own weights are within half a
    quantisation step of the folded kernel). Returns the new flatbuffer and one record per op.

    ``refine_levels``: first re-store the outputs of quantisers with ≥ this many steps on a finer
    grid before each conv (:func:`refine_quantiser_grids`; ``None``: no), so that the bias fit
    below keeps every threshold at 3 and 4 bits too.
    """
    if refine_levels is not None:
        model_bytes, _ = refine_quantiser_grids(model_bytes, refine_levels)

    model, op_name = _flatbuffer(model_bytes)
    layers = {k: v for k, v in plan.items() if "kernel" in v}
    records = []
    for g in model.subgraphs:
        for op in g.operators:
            opname = op_name(op)
            if opname not in ("CONV_2D", "FULLY_CONNECTED") or len(op.inputs) < 2:
                continue
            xt, wt = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
            bt = g.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            if wt.type != 9 or xt.quantization is None or xt.quantization.scale is None:
                continue
            s_in = float(xt.quantization.scale[0])
            wq = np.frombuffer(bytes(model.buffers[wt.buffer].data), np.int8).reshape(wt.shape).astype(np.int64)
            ws = np.asarray(wt.quantization.scale, np.float64)
            bshape = (-1,) + (1,) * (wq.ndim - 1)
            ws_exact = None  # the exact (float64) per-channel scale where the weights are exact
            deq = wq * ws.reshape(bshape)
            match = None
            for lname, info in layers.items():
                kt = _to_tflite_layout(info["kernel"])
                if kt.shape == deq.shape and np.max(np.abs(kt - deq)) <= 0.51 * ws.max() + 1e-7:
                    match = lname
                    break
            rec = {"op": opname, "op_index": int(g.operators.index(op)), "tensor_index": int(op.inputs[1]),
                   "tensor": wt.name.decode() if isinstance(wt.name, bytes) else str(wt.name),
                   "layer": match, "exact_weights": False, "bias_fixed": False}
            info = layers.get(match)
            if info is not None and info.get("copies"):
                # first conv on pixels: integer filter Q at `copies`× the int8 resolution, split into
                # `copies` int8 parts (one per repetition of the input) that sum to Q
                kc = int(info["copies"])
                kall = _to_tflite_layout(np.asarray(info["kernel_all"], np.float64))
                st = np.maximum(np.max(np.abs(kall.reshape(kall.shape[0], -1)), 1), 1e-30) / (127.0 * kc)
                st = st.astype(np.float32).astype(np.float64)
                qa = np.round(kall / st.reshape(bshape)).astype(np.int64)
                q = np.concatenate([np.floor_divide(qa + i, kc) for i in range(kc)], -1)
                assert q.shape == wq.shape and np.max(np.abs(q)) <= 127
                model.buffers[wt.buffer].data = np.ascontiguousarray(q.astype(np.int8)).view(np.uint8).reshape(-1)
                wt.quantization.scale = st.astype(np.float32).tolist()
                wt.quantization.zeroPoint = [0] * len(st)
                ws, wq = st, q
                rec["stem_copies"] = kc
            elif info is not None and info.get("kind") == "merged_conv":
                q, st, err = _merged_ints(plan, info)
                q = _to_tflite_layout(q)
                assert q.shape == wq.shape and np.max(np.abs(q)) <= 127
                model.buffers[wt.buffer].data = np.ascontiguousarray(q.astype(np.int8)).view(np.uint8).reshape(-1)
                wt.quantization.scale = st.astype(np.float32).tolist()
                wt.quantization.zeroPoint = [0] * len(st)
                ws, wq, ws_exact = st.astype(np.float32).astype(np.float64), q, st
                rec.update(exact_weights=True, merged=[info["main"], info["proj"]], proj_scale_rel_error=err,
                           int_values=sorted(int(v) for v in np.unique(q)))
            elif info is not None and info.get("fp_per_channel") and info.get("scale") is None:
                kt = _to_tflite_layout(np.asarray(info["kernel"], np.float64))
                st = np.maximum(np.max(np.abs(kt.reshape(kt.shape[0], -1)), 1), 1e-30) / 127.0
                st = st.astype(np.float32).astype(np.float64)
                q = np.clip(np.round(kt / st.reshape(bshape)), -127, 127)
                model.buffers[wt.buffer].data = np.ascontiguousarray(q.astype(np.int8)).view(np.uint8).reshape(-1)
                wt.quantization.scale = st.astype(np.float32).tolist()
                wt.quantization.zeroPoint = [0] * len(st)
                wt.quantization.quantizedDimension = 0
                ws, wq = st, q
                rec["per_channel"] = True
            elif info is not None and info.get("scale") is not None:
                st = np.asarray(info["scale"], np.float64)
                qf = _to_tflite_layout(info["kernel"]).astype(np.float64) / st.reshape(bshape)
                q = np.round(qf)
                if np.max(np.abs(qf - q)) < 1e-3 and np.max(np.abs(q)) <= 127:
                    model.buffers[wt.buffer].data = np.ascontiguousarray(q.astype(np.int8)).view(np.uint8).reshape(-1)
                    wt.quantization.scale = st.astype(np.float32).tolist()
                    wt.quantization.zeroPoint = [0] * len(st)
                    ws, wq, ws_exact = st.astype(np.float32).astype(np.float64), q, st
                    rec["exact_weights"] = True
                    rec["int_values"] = sorted(int(v) for v in np.unique(q))
            if bt is not None and bt.type == 2:
                if info is not None and info.get("bias") is not None:
                    b_real = np.asarray(info["bias"], np.float64)
                else:
                    bq = np.frombuffer(bytes(model.buffers[bt.buffer].data), np.int32).astype(np.float64)
                    b_real = bq * np.asarray(bt.quantization.scale, np.float64)
                sb = s_in * np.asarray(ws, np.float64)
                bq_new = np.round(b_real / sb)
                if info is not None and info.get("grid_out") and rec["exact_weights"]:
                    ot = g.tensors[op.outputs[0]]
                    if ot.quantization is not None and ot.quantization.scale is not None:
                        s_out = float(ot.quantization.scale[0])
                        step0 = s_out / sb
                        qonly = {}
                        if info.get("kind") == "exact_stem":
                            # int8-exact stem: integer weights with gcd 1 (every accumulator value is
                            # reachable) and only quantisers downstream: keep the decisions of the
                            # quantiser's thresholds (i + ½)/n, i < n, on the integer lattice
                            nq = int(round(1.0 / s_out))
                            qonly = {"halves": np.arange(nq) + 0.5,
                                     "min_g": 1}
                        mult = _input_multiple(g, op_name, int(op.inputs[0]))
                        if mult > 1:
                            rec["input_multiple"] = mult
                        # Keras' thresholds from the exact scales (levels i/n, exact float64 weight
                        # scales), the file's from its float32-stored ones: on accumulators ~1e5 the
                        # 6e-8 relative difference is ~1e-2 units, more than some thresholds' margin
                        sb_x = _exact_scale(s_in) * (ws if ws_exact is None else np.asarray(ws_exact, np.float64))
                        bq_new, new_step, rec["bias_moved"], unfit = _grid_bias(
                            b_real / sb_x, wq, _exact_scale(s_out) / sb_x, s_out, in_mult=mult,
                            step_file=step0, **qonly)
                        rec.update(bias_channels=int(len(bq_new)), bias_unfit_channels=len(unfit), bias_unfit=unfit)
                        adj = new_step != step0
                        if np.any(adj):  # per-channel scale nudged so an integer bias fits (see _grid_bias)
                            ws = np.where(adj, s_out / (s_in * new_step), ws).astype(np.float32).astype(np.float64)
                            wt.quantization.scale = ws.astype(np.float32).tolist()
                            sb = s_in * ws
                            rec["scale_adjusted_channels"] = int(np.sum(adj))
                            rec["max_scale_change"] = float(np.max(np.abs(new_step / step0 - 1)))
                bq_new = np.clip(bq_new, -(2**31) + 1, 2**31 - 1).astype(np.int32)
                model.buffers[bt.buffer].data = np.ascontiguousarray(bq_new).view(np.uint8).reshape(-1)
                bt.quantization.scale = sb.astype(np.float32).tolist()
                bt.quantization.zeroPoint = [0] * len(sb)
                rec["bias_fixed"] = True
            records.append(rec)
    return _serialise(model), records


def _grid_levels(t) -> int | None:
    """n if tensor ``t`` is int8 with scale 1/n (n = 2^k − 1, k ≥ 2) and zero point −128: a k-bit
    quantiser output as :class:`ActQ` writes it."""
    q = t.quantization
    if t.type != 9 or q is None or q.scale is None or len(q.scale) != 1 or q.zeroPoint is None:
        return None
    s, zp = float(q.scale[0]), int(q.zeroPoint[0])
    n = int(round(1.0 / s)) if s > 0 else 0
    if zp != -128 or n < 3 or (n + 1) & n or abs(s * n - 1.0) > 1e-6:
        return None
    return n


def refine_quantiser_grids(model_bytes: bytes, min_levels: int = FINE_GRID_MIN_LEVELS) -> tuple[bytes, list[dict]]:
    """Insert one int8→int8 QUANTIZE between each k-bit quantiser output (scale 1/n, n ≥
    ``min_levels``) and the CONV_2D / FULLY_CONNECTED ops reading it, storing level i as
    ``m·i − 128`` with scale ``1/(n·m)``, ``m = ⌊255/n⌋`` (17 at 4 bits).

    Why: the consumer's int32 accumulator then only takes multiples of ``m·g`` (g = gcd of its
    integer weights), so one integer bias per channel has ``m`` times the resolution relative to
    the lattice gaps and can keep every threshold decision of a ≥ 3-bit quantiser (at 4 bits with
    g = 8 alone it cannot, see :func:`_grid_bias`). The requantisation is exact (integer ratio
    m: no rounding). Residual adds, pads and slices keep reading the 1/n tensor. TF's converter
    folds a second fake-quant that only requantises, so the op is written into the flatbuffer.
    Returns the new bytes and one record per refined tensor (``n``, ``m``, consumers).
    """
    schema = _schema()
    model, opname = _flatbuffer(model_bytes)

    records = []
    for g in model.subgraphs:
        new_ops = []
        refined = {}  # source tensor -> fine tensor
        for op in g.operators:
            if opname(op) in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D") and len(op.inputs) > 1:
                src = int(op.inputs[0])
                n = _grid_levels(g.tensors[src])
                if n is not None and n >= min_levels:
                    if src not in refined:
                        m = 255 // n
                        st = g.tensors[src]
                        ft = schema.TensorT()
                        ft.shape = np.asarray(st.shape, np.int32).copy()
                        ft.type = 9
                        ft.buffer = 0
                        ft.name = (st.name.decode() if isinstance(st.name, bytes) else str(st.name or "t")) + "/fine_grid"
                        ft.quantization = schema.QuantizationParametersT()
                        ft.quantization.scale = [float(np.float32(1.0 / (n * m)))]
                        ft.quantization.zeroPoint = [-128]
                        g.tensors.append(ft)
                        qop = schema.OperatorT()
                        qop.opcodeIndex = _opcode(model, schema.BuiltinOperator.QUANTIZE, 1)
                        qop.inputs = np.asarray([src], np.int32)
                        qop.outputs = np.asarray([len(g.tensors) - 1], np.int32)
                        new_ops.append(qop)  # right before its first consumer: topological order holds
                        refined[src] = len(g.tensors) - 1
                        records.append({"tensor": int(src), "fine_tensor": refined[src], "n": n, "m": m,
                                        "consumers": []})
                    op.inputs = np.asarray(op.inputs, np.int32).copy()
                    op.inputs[0] = refined[src]
                    next(r for r in records if r["tensor"] == src)["consumers"].append(opname(op))
            new_ops.append(op)
        g.operators = new_ops
    return _serialise(model), records


#: the int16 logits' range is this many times the calibrated int8 logits range (no clipping)
LOGITS_INT16_WIDEN = 4.0


def int16_logits(model_bytes: bytes, widen: float = LOGITS_INT16_WIDEN, *, int16_pool: bool = True,
                 bias=None) -> tuple[bytes, dict]:
    """Compute the logits layer in 16x8 mode: the FULLY_CONNECTED whose output is dequantised into
    the float32 model output reads its int8 input through a CAST to int16 (zero point folded into
    the int64 bias: ``b + (−zp)·Σ_k w_jk``, exact), keeps its int8 weights and writes int16 logits
    (zero point 0, range ``widen``× the calibrated int8 range).

    ``int16_pool`` (default) and the FC's input written by a global MEAN of an int8 tensor (H·W ≤
    255): the CAST moves before the MEAN, which then sums the raw int8 values in int16 at the exact
    scale ``s/(H·W)`` — the pool is exact at any bit width (an int8 pool of a 4-bit 8×8 map has
    only 1/4 of the resolution of the mean of its 960 level steps); the zero point ``H·W·zp`` is
    folded into the int64 bias, the bias re-expressed at the finer scale.

    Why: an int8 logits tensor has 256 steps; a Keras top-2 gap below one step (weak models: 0.04)
    can flip the class though every accumulator is exact. int16 makes the step ~60× finer even
    with the 4× wider range. Cost: ~0.2 kB and tiny non-XNNPACK ops (CAST, MEAN, FC on 1 × C).
    ``record["int16_pool"]``: ``{"scale", "values"}`` of the int16 pool, or None. ``bias``: the
    layer's real bias (float, one per class; e.g. the export plan's), re-quantised exactly at the
    int16 pool's finer scale; without it the int32 bias is rescaled (keeping its rounding).
    Returns ``(bytes, record)``; ``record["applied"]`` is False (bytes unchanged) with a reason when
    the graph does not end in FULLY_CONNECTED → DEQUANTIZE.
    """
    schema = _schema()
    model, opname = _flatbuffer(model_bytes)

    g = model.subgraphs[0]
    outs = {int(i) for i in g.outputs}
    fc = None
    for op in g.operators:
        if opname(op) == "DEQUANTIZE" and int(op.outputs[0]) in outs:
            prod = [o for o in g.operators if int(op.inputs[0]) in [int(i) for i in o.outputs]]
            readers = [o for o in g.operators if int(op.inputs[0]) in [int(i) for i in o.inputs]]
            if prod and opname(prod[0]) == "FULLY_CONNECTED" and len(readers) == 1:
                fc = prod[0]
    if fc is None:
        return model_bytes, {"applied": False, "why": "no FULLY_CONNECTED → DEQUANTIZE → output at the end"}
    xi, wi = int(fc.inputs[0]), int(fc.inputs[1])
    xt, wt, ot = g.tensors[xi], g.tensors[wi], g.tensors[int(fc.outputs[0])]
    if xt.type != 9 or wt.type != 9 or ot.type != 9:
        return model_bytes, {"applied": False, "why": "the logits layer is not int8 → int8"}
    s_x, zp_x = float(xt.quantization.scale[0]), int(xt.quantization.zeroPoint[0])
    s_o, zp_o = float(ot.quantization.scale[0]), int(ot.quantization.zeroPoint[0])
    w = np.frombuffer(bytes(model.buffers[wt.buffer].data), np.int8).reshape(wt.shape).astype(np.int64)
    pool = _int16_pool_site(g, opname, xi, fc) if int16_pool else None
    if len(fc.inputs) > 2 and int(fc.inputs[2]) >= 0:
        bt = g.tensors[int(fc.inputs[2])]
        b = np.frombuffer(bytes(model.buffers[bt.buffer].data), np.int32).astype(np.int64)
    else:  # no bias: add one (its scale is input scale × weight scale, per channel)
        bt = schema.TensorT()
        bt.shape = np.asarray([w.shape[0]], np.int32)
        ws = np.broadcast_to(np.asarray(wt.quantization.scale, np.float64), (w.shape[0],))
        bt.quantization = schema.QuantizationParametersT()
        bt.quantization.scale = (s_x * ws).astype(np.float32).tolist()
        bt.quantization.zeroPoint = [0] * w.shape[0]
        g.tensors.append(bt)
        fc.inputs = np.asarray(list(fc.inputs[:2]) + [len(g.tensors) - 1], np.int32)
        b = np.zeros(w.shape[0], np.int64)
    if pool is not None:
        # the bias was quantised at s_x·s_w; the int16 pool has the finer scale s_l/(H·W) and the
        # effective zero point H·W·zp_l (it sums the raw int8 values, zero point included)
        mean_op, lt, hw = pool
        s_l, zp_l = float(lt.quantization.scale[0]), int(lt.quantization.zeroPoint[0])
        s_m = float(np.float32(s_l / hw))
        sw = np.broadcast_to(np.asarray(wt.quantization.scale, np.float64), (w.shape[0],))
        if bias is not None:
            b = np.round(np.asarray(bias, np.float64).reshape(-1) / (s_m * sw)).astype(np.int64)
        else:
            b = np.round(b * (s_x / s_m)).astype(np.int64)
        bt.quantization.scale = (s_m * sw).astype(np.float32).tolist()
        bt.quantization.zeroPoint = [0] * w.shape[0]
        zp_x, s_x = hw * zp_l, s_m
    b64 = b - zp_x * w.sum(axis=1)
    buf = schema.BufferT()
    buf.data = np.frombuffer(b64.astype("<i8").tobytes(), np.uint8).copy()
    model.buffers.append(buf)
    bt.buffer, bt.type = len(model.buffers) - 1, 4  # INT64

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
        mean_op.opcodeIndex = _opcode(model, schema.BuiltinOperator.MEAN, 3)  # v3: int16 (lite/tools/versioning)
        xt.type = 7
        xt.quantization.scale, xt.quantization.zeroPoint = [s_x], [0]

    lo, hi = s_o * (-128 - zp_o), s_o * (127 - zp_o)
    step = float(np.float32(widen * max(abs(lo), abs(hi)) / 32767.0))
    ot.type = 7
    ot.quantization.scale, ot.quantization.zeroPoint = [step], [0]
    rec = {"applied": True, "dtype": "int16", "step": step, "int8_step": s_o,
           "range": [-32767 * step, 32767 * step], "int8_range": [lo, hi],
           "int16_pool": None if pool is None else {"scale": s_x, "values": int(pool[2])}}
    return _serialise(model), rec


def _cast_to_int16(model, g, src: int, scale: float, *, before) -> int:
    """Add ``CAST`` int8 tensor ``src`` → a new int16 tensor (same values, ``scale``, zero point 0)
    before operator ``before``; returns the new tensor's index."""
    schema = _schema()
    st = g.tensors[src]
    x16 = schema.TensorT()
    x16.shape = np.asarray(st.shape, np.int32).copy()
    x16.type, x16.buffer = 7, 0  # INT16
    x16.name = (st.name.decode() if isinstance(st.name, bytes) else str(st.name or "x")) + "/int16"
    x16.quantization = schema.QuantizationParametersT()
    x16.quantization.scale, x16.quantization.zeroPoint = [scale], [0]
    g.tensors.append(x16)
    cast = schema.OperatorT()
    cast.opcodeIndex = _opcode(model, schema.BuiltinOperator.CAST, 3)  # v3: int8 input (lite/tools/versioning)
    cast.inputs, cast.outputs = np.asarray([src], np.int32), np.asarray([len(g.tensors) - 1], np.int32)
    cast.builtinOptionsType = schema.BuiltinOptions.CastOptions
    cast.builtinOptions = schema.CastOptionsT()
    cast.builtinOptions.inDataType, cast.builtinOptions.outDataType = 9, 7
    g.operators.insert(g.operators.index(before), cast)
    return len(g.tensors) - 1


def _int16_pool_site(g, opname, xi: int, fc):
    """``(MEAN op, its int8 input tensor, H·W)`` if the logits input ``xi`` is written by a spatial
    MEAN of an int8 per-tensor-quantised NHWC tensor read by nothing else, with H·W·128 < 2^15
    (the int16 sum of H·W raw int8 values cannot overflow); else None."""
    prod = [o for o in g.operators if xi in [int(i) for i in o.outputs]]
    if len(prod) != 1 or opname(prod[0]) != "MEAN":
        return None
    mean_op = prod[0]
    lt = g.tensors[int(mean_op.inputs[0])]
    readers = [o for o in g.operators if xi in [int(i) for i in o.inputs]]
    q = lt.quantization
    if readers != [fc] or lt.type != 9 or len(lt.shape) != 4 or q is None or q.scale is None or len(q.scale) != 1:
        return None
    hw = int(lt.shape[1]) * int(lt.shape[2])
    return (mean_op, lt, hw) if 0 < hw * 128 < 2**15 else None


def _flatbuffer(model_bytes: bytes):
    """``(model object, opname)`` of a TFLite flatbuffer; ``opname(op)`` is the builtin's name."""
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(model_bytes))
    names = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}

    def opname(op):
        c = model.operatorCodes[op.opcodeIndex]
        return names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?")

    return model, opname


def _serialise(model) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    return bytes(fbu.convert_object_to_bytearray(model))


def _opcode(model, builtin: int, version: int) -> int:
    """Index of ``builtin``'s operator code in ``model`` (added with ``version`` if missing; an
    existing entry keeps the larger version)."""
    for i, c in enumerate(model.operatorCodes):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin:
            c.version = max(int(c.version), version)
            return i
    oc = _schema().OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _input_multiple(g, opname, tensor_index: int) -> int:
    """m if tensor ``tensor_index`` is written by an int8→int8 QUANTIZE from a tensor of an integer
    ``m`` times its scale (zero points −128): its values are m·i − 128 (see
    :func:`refine_quantiser_grids`); else 1."""
    for op in g.operators:
        if tensor_index in list(op.outputs):
            if opname(op) != "QUANTIZE":
                return 1
            a, b = g.tensors[op.inputs[0]], g.tensors[tensor_index]
            if a.type != 9 or _grid_levels(a) is None:
                return 1
            r = float(a.quantization.scale[0]) / float(b.quantization.scale[0])
            m = int(round(r))
            return m if m >= 1 and abs(r - m) < 1e-4 and int(b.quantization.zeroPoint[0]) == -128 else 1
    return 1


def _merged_ints(plan: dict, info: dict):
    """Integer kernel (HWIO) and per-channel scale of a merged conv2 + 1×1 projection.

    Channel j: conv2 taps ``sign(c_j)·M_j·n·w`` and projection taps ``sign(p_j)·P_j·n·w'`` (both
    exact DoReFa levels, odd integers × M or P), scale ``|c_j|/(n·M_j)``; ``P_j/M_j`` is the best
    fraction with ``M_j, P_j ≤ ⌊127/n⌋`` for the BN-factor ratio ``|p_j/c_j|`` — the only
    approximation (returned: its largest relative error).
    """
    pm, pp = plan[info["main"]], plan[info["proj"]]
    n = int(pm["n"])
    mmax = 127 // n
    wm = np.round(np.asarray(pm["dorefa"], np.float64) * n).astype(np.int64)
    wp = np.round(np.asarray(pp["dorefa"], np.float64) * n).astype(np.int64)
    cm, cp = np.asarray(pm["c"], np.float64), np.asarray(pp["c"], np.float64)
    kh, kw, ci, cout = wm.shape
    q = np.zeros((kh, kw, ci + wp.shape[2], cout), np.int64)
    st = np.zeros(cout)
    worst = 0.0
    for j in range(cout):
        if abs(cm[j]) < 1e-30:
            mm, pj, st[j] = 0, mmax, max(abs(cp[j]), 1e-30) / (n * mmax)
        else:
            r = abs(cp[j] / cm[j])
            best = None
            for mm_ in range(1, mmax + 1):
                pj_ = int(min(max(round(r * mm_), 0), mmax))
                e = abs(pj_ / mm_ - r) / max(r, 1e-30)
                if best is None or e < best[0] - 1e-12 or (abs(e - best[0]) <= 1e-12 and mm_ > best[1]):
                    best = (e, mm_, pj_)
            e, mm, pj = best
            worst = max(worst, e)
            st[j] = abs(cm[j]) / (n * mm)
        q[:, :, :ci, j] = np.sign(cm[j]) * mm * wm[..., j]
        q[kh // 2, kw // 2, ci:, j] = np.sign(cp[j]) * pj * wp[0, 0, :, j]
    return q, st, float(worst)


#: smallest feasible interval of output steps (relative) that :func:`_grid_bias` uses: 25 % of it
#: must exceed the float32 rounding of the per-channel scale the new step is stored in
MIN_STEP_WIDTH = 1e-5


def _exact_scale(s: float) -> float:
    """``1/m`` if the float32-stored scale ``s`` is 1/m for an integer m (a level grid, 1/64 of the
    exact stem's input), else ``s``."""
    m = round(1.0 / s) if s > 0 else 0
    return 1.0 / m if m >= 1 and abs(s * m - 1.0) < 1e-6 else float(s)


def _grid_bias(beta, wq, step, s_out: float, *, halves=None, min_g: int = 2, in_mult: int = 1,
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
    output, :func:`refine_quantiser_grids`), so the lattice step is ``in_mult·g_j``.
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


def compact_model(model_bytes: bytes) -> tuple[bytes, dict]:
    """Drop what an inference flatbuffer does not need; the graph and every value are unchanged.

    * tensor names, except the subgraph inputs/outputs (the signature keeps its own names);
    * ``shape_signature`` of tensors that are not subgraph inputs/outputs (only the I/O signature
      is used when an input is resized; every other shape is recomputed by the kernels);
    * buffers: every data-less tensor points at the empty buffer 0, identical constant buffers are
      shared, unreferenced buffers are removed;
    * the ``CONVERSION_METADATA`` metadata entry (converter options and version; not read by the
      runtime). ``min_runtime_version`` is kept;
    * repeated quantisation vectors: each distinct one is stored once (:func:`_pack_shared_quantization`).

    Returns the new bytes and the bytes each step removed (measured by re-serialising).
    """
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    model = fbu.convert_bytearray_to_object(bytearray(model_bytes))
    removed = {}
    io = [set(g.inputs) | set(g.outputs) for g in model.subgraphs]

    def size():
        return len(fbu.convert_object_to_bytearray(model))

    before = len(model_bytes)
    n_prev = size()
    for attr, key in (("name", "tensor_names"), ("shapeSignature", "shape_signatures")):
        for g, keep in zip(model.subgraphs, io):
            for i, t in enumerate(g.tensors):
                if i not in keep:
                    setattr(t, attr, None)
        n_now = size()
        removed[key] = n_prev - n_now
        n_prev = n_now
    bufs, index = [model.buffers[0]], {}
    for g in model.subgraphs:
        for t in g.tensors:
            b = model.buffers[t.buffer]
            if b.data is None or len(b.data) == 0:
                t.buffer = 0
                continue
            key = bytes(np.asarray(b.data, np.uint8))
            if key not in index:
                index[key] = len(bufs)
                bufs.append(b)
            t.buffer = index[key]
    meta = [md for md in (model.metadata or []) if md.name not in (b"CONVERSION_METADATA", "CONVERSION_METADATA")]
    for md in meta:
        bufs.append(model.buffers[md.buffer])
        md.buffer = len(bufs) - 1
    removed["conversion_metadata_entries"] = len(model.metadata or []) - len(meta)
    model.buffers = bufs
    model.metadata = meta or None
    n3 = size()
    removed["buffers_and_metadata"] = n_prev - n3
    out = _pack_shared_quantization(model)
    removed["shared_quantization_vectors"] = n3 - len(out)
    removed["total"] = before - len(out)
    return out, removed


def _pack_shared_quantization(model) -> bytes:
    """Serialise a flatbuffer model object writing each distinct quantisation vector (scales, zero
    points, min/max) once and pointing every table that uses it at that copy.

    Why: per-channel tensors must carry one int64 zero point per channel (all zeros; a 1-entry
    vector is rejected by the interpreter), so a ResNet-20 repeats ~800 zero points twice (weights
    and biases). A flatbuffer vector may be referenced from many tables (the format is a DAG, as
    with shared strings), so sharing changes no value the interpreter reads."""
    import flatbuffers

    schema = _schema()
    builder = flatbuffers.Builder(1024)
    cache = {}

    def vec(values, start, prepend):
        if values is None:
            return None
        key = (start.__name__, tuple(np.asarray(values).tolist()))
        if key not in cache:
            start(builder, len(values))
            for v in reversed(list(values)):
                prepend(v)
            cache[key] = builder.EndVector()
        return cache[key]

    def pack(self, b):
        assert b is builder
        mn = vec(self.min, schema.QuantizationParametersStartMinVector, b.PrependFloat32)
        mx = vec(self.max, schema.QuantizationParametersStartMaxVector, b.PrependFloat32)
        sc = vec(self.scale, schema.QuantizationParametersStartScaleVector, b.PrependFloat32)
        zp = vec(self.zeroPoint, schema.QuantizationParametersStartZeroPointVector, b.PrependInt64)
        details = self.details.Pack(b) if self.details is not None else None
        schema.QuantizationParametersStart(b)
        for off, add in ((mn, schema.QuantizationParametersAddMin), (mx, schema.QuantizationParametersAddMax),
                         (sc, schema.QuantizationParametersAddScale),
                         (zp, schema.QuantizationParametersAddZeroPoint)):
            if off is not None:
                add(b, off)
        schema.QuantizationParametersAddDetailsType(b, self.detailsType)
        if details is not None:
            schema.QuantizationParametersAddDetails(b, details)
        schema.QuantizationParametersAddQuantizedDimension(b, self.quantizedDimension)
        return schema.QuantizationParametersEnd(b)

    original = schema.QuantizationParametersT.Pack
    schema.QuantizationParametersT.Pack = pack
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    finally:
        schema.QuantizationParametersT.Pack = original
    return bytes(builder.Output())


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


# ------------------------------------------------------------------------ int4 weight variant
def _names_layer(tensor_name: str, layer: str) -> bool:
    return re.search(rf"/{re.escape(layer)}(_\d+)?/", tensor_name) is not None


def _pack_int4(q: np.ndarray) -> np.ndarray:
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


def w4_layers(plan: dict, max_bits: int = 3) -> list[str]:
    """Layers whose DoReFa kernel fits an int4 grid exactly: 2 ≤ w_bits ≤ 3 (odd ints ≤ 7)."""
    return [k for k, v in plan.items() if "kernel" in v and 2 <= int(v.get("w_bits", 32)) <= max_bits]


def convert_w4(fp32_bytes: bytes, plan: dict) -> tuple[bytes, list[dict]]:
    """fp32 model with the ≤3-bit DoReFa conv/dense kernels stored as INT4 (weight-only).

    Route: ai-edge-quantizer weight-only int4 (per-channel) on the fp32 flatbuffer for exactly
    those layers, then the exact grid is written over its values: its symmetric max-based scale
    ``max|w|/7`` stores the 2-bit levels {±1/3, ±1} as {±2, ±7}·max/7 (1/3 → 2/7, measured), so
    the filters are rewritten as ``q = n·M·w`` (M = ⌊7/n⌋: k=2 → {±2, ±6}, k=3 → odd ±1…±7)
    with per-channel scale ``|c_j|/(n·M)``. Activations and arithmetic stay float32 (a
    DEQUANTIZE feeds each conv), so this saves storage, not compute.
    """
    import re as _re

    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise ExportError("the int4 export needs the optional package ai-edge-quantizer: "
                          "pip install 'rolekd-tf[litert]'") from None
    from tensorflow.lite.tools import flatbuffer_utils as fbu

    names = w4_layers(plan)
    if not names:
        raise ExportError("no layer has 2..3-bit DoReFa weights; the int4 variant would store nothing in int4")
    rx = "|".join(_re.escape(n) for n in names)
    q = quantizer.Quantizer(bytearray(fp32_bytes))
    for opn, kind in ((qtyping.TFLOperationName.CONV_2D, "conv"), (qtyping.TFLOperationName.FULLY_CONNECTED, "dense")):
        if any(plan[n]["kind"] == kind for n in names):
            q.add_weight_only_config(regex=rf".*/({rx})(_\d+)?/.*", operation_name=opn, num_bits=4,
                                     granularity=qtyping.QuantGranularity.CHANNELWISE)
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            data = bytes(q.quantize().quantized_model)
    except Exception as e:
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(f"ai-edge-quantizer failed on the int4 variant: {type(e).__name__}: {str(e)[:200]}") from None
    # The fp32 filters as converted: the converter folds the 1/n of the preceding activation
    # quantiser (round(n·x)/n) into them, so they are r_j × the plan's kernel (r_j = 1/n, measured).
    src = fbu.convert_bytearray_to_object(bytearray(fp32_bytes))
    fp32_filters = {}
    for g in src.subgraphs:
        for t in g.tensors:
            if t.type == 0 and t.buffer and src.buffers[t.buffer].data is not None and len(src.buffers[t.buffer].data):
                fp32_filters[t.name] = np.frombuffer(bytes(src.buffers[t.buffer].data), np.float32).reshape(
                    tuple(int(v) for v in t.shape))
    model = fbu.convert_bytearray_to_object(bytearray(data))
    records = []
    for g in model.subgraphs:
        for t in g.tensors:
            if t.type != 17:
                continue
            shape = tuple(int(s) for s in t.shape)
            qv = unpack_int4(np.asarray(model.buffers[t.buffer].data, np.uint8), int(np.prod(shape))).reshape(shape)
            bshape = (-1,) + (1,) * (len(shape) - 1)
            rec = {"tensor": t.name.decode() if isinstance(t.name, bytes) else str(t.name), "layer": None,
                   "exact_weights": False, "quantizer_int_values": sorted(int(v) for v in np.unique(qv))}
            kf = fp32_filters.get(t.name)
            for lname in sorted(names, key=len, reverse=True):
                info = plan[lname]
                kt = _to_tflite_layout(info["kernel"]).astype(np.float64)
                if kf is None or kt.shape != shape or not _names_layer(rec["tensor"], lname):
                    continue
                rec["layer"] = lname
                kf64 = kf.astype(np.float64)
                flat_t, flat_f = kt.reshape(shape[0], -1), kf64.reshape(shape[0], -1)
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = np.nanmedian(np.where(flat_t != 0, flat_f / flat_t, np.nan), axis=1)
                if not np.all(np.isfinite(r)) or np.max(np.abs(flat_f - r[:, None] * flat_t)) > 1e-5 * np.max(np.abs(flat_f)):
                    break
                n = int(info["n"])
                m = 7 // n
                # exact per-channel scale |c_j|·r_j/(n·M), from the int8 plan's |c_j|/(n·⌊127/n⌋)
                st = np.abs(np.asarray(info["scale"], np.float64) * (int(info["int_step"]) / m) * r)
                qf = kf64 / st.reshape(bshape)
                qq = np.round(qf)
                if np.max(np.abs(qf - qq)) < 1e-3 and np.max(np.abs(qq)) <= 7:
                    model.buffers[t.buffer].data = _pack_int4(qq)
                    t.quantization.scale = st.astype(np.float32).tolist()
                    t.quantization.zeroPoint = [0] * len(st)
                    rec.update(exact_weights=True, int_values=sorted(int(v) for v in np.unique(qq)),
                               folded_factor=float(np.median(r)))
                break
            records.append(rec)
    return bytes(fbu.convert_object_to_bytearray(model)), records
