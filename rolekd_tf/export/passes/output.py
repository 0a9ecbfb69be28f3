"""Pass, integer output: int8 file bytes → bytes that return the logits in the integer type the
file computes them in (int16 with the default 16x8 logits layer, int8 with ``--int8-logits``),
without the final DEQUANTIZE.

Why: a file without any float op runs on integer-only targets (microcontrollers without an FPU,
int8 accelerators), as tfmot's int8-in / int8-out files do. The caller dequantises with the
output's scale and zero point, ``(q − zero_point)·scale`` — the float32 logits the DEQUANTIZE would
have returned, bit for bit — or takes the argmax of the integers directly (the same class:
dequantisation is increasing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.errors import ExportError
from rolekd_tf.export import flatbuf as F
from rolekd_tf.export.records import Record


@dataclass(frozen=True, eq=False, kw_only=True)
class OutputRecord(Record):
    """The file's logits output after the pass: ``dtype`` (int16 / int8), ``scale`` and
    ``zero_point`` (real logit = (q − zero_point)·scale)."""
    dtype: str
    scale: float
    zero_point: int


def integer_output(model_bytes: bytes) -> tuple[bytes, OutputRecord]:
    """Drop the DEQUANTIZE that produces the single float32 output of the main subgraph; its
    integer input becomes the output (of the subgraph and of every signature def), under the
    output's name. Raises :class:`~rolekd_tf.errors.ExportError` if the output is not such a
    DEQUANTIZE (nothing to remove)."""
    model, opname = F.read(model_bytes)
    g = model.subgraphs[0]
    outs = [int(i) for i in g.outputs]
    prod = F.producers(g, outs[0]) if len(outs) == 1 else []
    if len(prod) != 1 or opname(prod[0]) != "DEQUANTIZE" or F.readers(g, outs[0]):
        raise ExportError("integer output: the file's output is not one DEQUANTIZE of the logits")
    out, src = outs[0], int(prod[0].inputs[0])
    g.operators = [op for op in g.operators if op is not prod[0]]
    g.outputs = np.asarray([src], np.int32)
    name = g.tensors[out].name
    g.tensors[out].name = F.name_of(g.tensors[out], "t") + "/unused"  # non-I/O: compact drops it
    g.tensors[src].name = name
    for sd in model.signatureDefs or []:
        for t in sd.outputs or []:
            if int(t.tensorIndex) == out:
                t.tensorIndex = src
    t = g.tensors[src]
    q = t.quantization
    rec = OutputRecord(dtype=F.TENSOR_TYPES.get(t.type, str(t.type)), scale=float(q.scale[0]),
                       zero_point=int(q.zeroPoint[0]))
    return F.write(model), rec
