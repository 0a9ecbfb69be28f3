"""The int8 export as a sequence of passes over the TFLite file.

    convert → exact weight grids → bias fit → subsample → logits → (integer output) → compact → verify

==========  =============================================  ==========================================
module      takes                                          returns
==========  =============================================  ==========================================
convert     export view (+ representative pixels)          bytes
grids       bytes, plan                                    bytes, [RefinedGrid], [OpRecord]
bias        bytes, plan, [OpRecord]                        bytes, [OpRecord] (bias fields filled)
subsample   bytes                                          bytes, SubsampleRecord
logits      bytes (+ the logits layer's real bias)         bytes, LogitsRecord (+ ExactPool)
output      bytes (option: no final DEQUANTIZE)            bytes, OutputRecord
compact     bytes                                          bytes, CompactRecord
verify      bytes, Evaluation, plan, records               bytes (unchanged), VerifyRecord
w4          fp32 bytes, plan (the int4-weight variant)     bytes, [Int4Record]
==========  =============================================  ==========================================

Each pass is a function of file bytes (the plan is :data:`rolekd_tf.export.plan.Plan`, built by
:func:`rolekd_tf.export.graph.build_export_view`); records are frozen dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass

from rolekd_tf.export.passes.bias import fit_biases
from rolekd_tf.export.passes.compact import CompactRecord, compact_model
from rolekd_tf.export.passes.convert import convert_fp32, convert_int8
from rolekd_tf.export.passes.grids import FINE_GRID_MIN_LEVELS, OpRecord, RefinedGrid, exact_grids
from rolekd_tf.export.passes.logits import ExactPool, LogitsRecord, int16_logits, keep_int8_logits, needs_exact_pool
from rolekd_tf.export.passes.output import OutputRecord, integer_output
from rolekd_tf.export.passes.subsample import SubsampleRecord, subsample_as_depthwise
from rolekd_tf.export.plan import Plan


def fix_int8_model(model_bytes: bytes, plan: Plan, *,
                   refine_levels: int | None = FINE_GRID_MIN_LEVELS) -> tuple[bytes, list[OpRecord]]:
    """The exact-grids and bias-fit passes in a row: converter int8 bytes → bytes whose filters
    and biases are exact; one :class:`OpRecord` per conv/dense op. ``refine_levels=None``: no finer
    quantiser grids (see :func:`~rolekd_tf.export.passes.grids.refine_quantiser_grids`)."""
    data, _, ops = exact_grids(model_bytes, plan, refine_levels=refine_levels)
    return fit_biases(data, plan, ops)


@dataclass(frozen=True, eq=False)
class Int8File:
    """The int8 file after every pass but verify, and each pass's record."""
    data: bytes
    refined: list[RefinedGrid]
    ops: list[OpRecord]
    subsample: SubsampleRecord
    logits: LogitsRecord
    compacted: CompactRecord
    output: OutputRecord | None = None


def int8_file(view, representative, plan: Plan, *, int16: bool = True, logits_bias=None,
              input_type: str = "uint8", integer_logits_output: bool = False) -> Int8File:
    """convert → grids → bias → subsample → logits (int16 unless ``int16=False``; an exact pool of
    int8 window sums only where :func:`~rolekd_tf.export.passes.logits.needs_exact_pool`) → compact.
    ``representative``: what ``view`` takes (pixels, or normalised images); ``input_type``: the
    file's input dtype (:func:`~rolekd_tf.export.passes.convert.convert_int8`);
    ``integer_logits_output``: the file returns its integer logits (:mod:`~rolekd_tf.export.passes.output`)."""
    data = convert_int8(view, representative, input_type=input_type)
    data, refined, ops = exact_grids(data, plan)
    data, ops = fit_biases(data, plan, ops)
    data, subsample = subsample_as_depthwise(data)
    data, logits = (int16_logits(data, bias=logits_bias, exact_pool=needs_exact_pool(plan)) if int16
                    else keep_int8_logits(data))
    output = None
    if integer_logits_output:
        data, output = integer_output(data)
    data, compacted = compact_model(data)
    return Int8File(data, refined, ops, subsample, logits, compacted, output)


__all__ = ["convert_fp32", "convert_int8", "exact_grids", "fit_biases", "fix_int8_model", "int16_logits",
           "compact_model", "int8_file", "integer_output", "OutputRecord", "needs_exact_pool", "subsample_as_depthwise", "SubsampleRecord", "Int8File", "OpRecord", "RefinedGrid", "LogitsRecord", "ExactPool", "CompactRecord"]
