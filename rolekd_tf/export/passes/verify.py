"""Pass 6, verify: file bytes → the same bytes plus a :class:`VerifyRecord`: the file run on the
evaluation pixels with the LiteRT interpreter and compared with Keras (and the float64 twin),
its single-image latency, and the stored dtype of every conv/dense filter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export import report as R
from rolekd_tf.export import tflite as T
from rolekd_tf.export.records import Record


@dataclass(frozen=True, eq=False, kw_only=True)
class VerifyRecord(Record):
    """``eval``/``eval_float64``: :func:`rolekd_tf.export.report.compare` against Keras float32 /
    float64 (accuracy, top-1 agreement, max |Δlogit|); ``latency_ms``: median single-image invoke;
    ``layers``: :func:`rolekd_tf.export.report.layer_table`; ``input_*``: the file's input tensor."""
    bytes: int
    input_dtype: str
    input_quantization: list
    eval: dict
    eval_float64: dict | None
    latency_ms: float
    layers: list[dict]


@dataclass(frozen=True)
class Evaluation:
    """What every file is checked against: ``pixels`` (N, H, W, 3) float32 in [0, 255] (for a file
    that takes normalised images: those, as its caller computes them) with their
    ``labels`` and Keras' float32 logits ``reference`` (and float64 ``reference64``, or None);
    ``timing_pixel`` (1, H, W, 3) for the latency."""
    pixels: np.ndarray
    labels: np.ndarray
    reference: np.ndarray
    reference64: np.ndarray | None
    timing_pixel: np.ndarray
    latency_repeats: int = 100
    num_threads: int = 1


def verify(model_bytes: bytes, ev: Evaluation, plan, ops=None) -> tuple[bytes, VerifyRecord]:
    """Run and time ``model_bytes`` (unchanged, returned as is) on ``ev``; ``plan``/``ops`` (the
    export plan and the records of the grids/bias or int4 pass) name the layers of its filters."""
    interp = T.interpreter(model_bytes, num_threads=ev.num_threads)
    logits = T.run(interp, ev.pixels, batch=64) if len(ev.pixels) else ev.reference
    inp = interp.get_input_details()[0]
    rec = VerifyRecord(
        bytes=len(model_bytes), input_dtype=np.dtype(inp["dtype"]).name,
        input_quantization=[float(inp["quantization"][0]), int(inp["quantization"][1])],
        eval=R.compare(logits, ev.reference, ev.labels),
        eval_float64=None if ev.reference64 is None else R.compare(logits, ev.reference64, ev.labels),
        latency_ms=T.latency_ms(interp, ev.timing_pixel, repeats=ev.latency_repeats),
        layers=R.layer_table(model_bytes, plan, ops))
    return model_bytes, rec
