"""Running TFLite files: the LiteRT interpreter, batched inference, latency, filter inspection.

``ai_edge_litert`` (LiteRT, the runtime embedded targets ship) is used; TF's deprecated
``tf.lite.Interpreter`` only where that package is missing. Building the files is
:mod:`rolekd_tf.export.passes`.
"""
from __future__ import annotations

import time

import numpy as np

from rolekd_tf.export.flatbuf import tensor_types as flatbuffer_tensor_types  # noqa: F401 (public name)


def runtime_name() -> str:
    """``"ai_edge_litert <version>"`` or, where that package is missing, ``"tf.lite <tf version>"``."""
    try:
        import ai_edge_litert

        return f"ai_edge_litert {getattr(ai_edge_litert, '__version__', '?')}"
    except ImportError:
        import tensorflow as tf

        return f"tf.lite {tf.__version__}"


def interpreter(model_bytes_or_path, num_threads: int = 1, **options):
    """An allocated LiteRT interpreter for a ``.tflite`` file path or its bytes (``options``: the
    interpreter's keyword arguments, e.g. ``experimental_preserve_all_tensors=True``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    kw = {"model_content": bytes(model_bytes_or_path)} if isinstance(model_bytes_or_path, (bytes, bytearray)) \
        else {"model_path": str(model_bytes_or_path)}
    from rolekd_tf._quiet import native_stderr_quiet

    with native_stderr_quiet():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = Interpreter(num_threads=num_threads, **kw, **options)
        interp.allocate_tensors()
    return interp


def weight_tensors(interp) -> list[dict]:
    """Constant weight tensors (conv/dense filters) with dtype, quantisation and values.

    Reads the op list through the interpreter's private ``_get_ops_details`` (see
    :mod:`rolekd_tf.export` for why)."""
    out = []
    ops = interp._get_ops_details()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") or len(op["inputs"]) < 2:
            continue
        idx = int(op["inputs"][1])
        producer = next((o for o in ops if idx in list(o["outputs"])), None)
        if producer is not None and producer["op_name"] == "DEQUANTIZE":
            idx = int(producer["inputs"][0])  # weight-only variants: the stored (int4/int8) tensor
        d = details[idx]
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


def _input_values(inp: dict, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (0..255) as the interpreter's input dtype (uint8, int8 with its quantisation, float32)."""
    if inp["dtype"] == np.uint8:
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    if inp["dtype"] == np.int8:
        s, zp = inp["quantization"]
        return np.clip(np.round(np.asarray(pixels, np.float64) / s + zp), -128, 127).astype(np.int8)
    return np.asarray(pixels).astype(np.float32)


def run(interp, pixels: np.ndarray, *, batch: int = 1) -> np.ndarray:
    """Float32 logits for ``pixels`` (N,H,W,3, values 0..255; for a file exported with
    ``--int8-input normalised``: the normalised images, :func:`rolekd_tf.models.normalisation.normalise`),
    one batch at a time; the values are quantised to the file's input dtype, and integer outputs
    (``--integer-output``) dequantised with their scale and zero point."""
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    x = _input_values(inp, np.asarray(pixels))
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
    interp.set_tensor(inp["index"], _input_values(inp, pixel[:1]))
    for _ in range(warmup):
        interp.invoke()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        interp.invoke()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)
