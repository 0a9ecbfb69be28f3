"""The export plan: what :func:`rolekd_tf.export.graph.build_export_view` decided per layer, read
by the flatbuffer passes (:mod:`rolekd_tf.export.passes`) and the report.

``Plan`` maps a layer name of the trained model to one of the frozen records below. Kernels are in
Keras layout (HWIO / (in, out)), float32, with any folded BatchNormalization factor ``c_j``
applied; biases are the real (float) biases, one per output channel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rolekd_tf.export.records import Record

#: kinds of :class:`WeightPlan`
WEIGHT_KINDS = ("conv", "dense", "stem", "exact_stem", "exact_dense")


@dataclass(frozen=True, eq=False, kw_only=True)
class WeightPlan(Record):
    """A conv/dense layer of the view.

    ``kind``: ``conv``/``dense`` (plain), ``stem`` (FP first conv with the normalisation folded
    in, input repeated ``copies`` times), ``exact_stem`` (int8-exact first conv on pixels − 128),
    ``exact_dense`` (int8-grid logits layer). ``scale``: exact per-channel int8 scale of the stored
    integer filter (None: not an exact grid); ``int_step``: the integer step of that grid;
    ``n``: 2^w_bits − 1 (1 for binary, 0 for full precision). ``grid_out``: the output feeds only
    k-bit quantisers (the bias pass keeps their rounding decisions). ``merged_into``: the
    :class:`MergedConvPlan` this conv is part of (then ``c``: its BN factor, ``dorefa``: its
    DoReFa kernel before the factor)."""
    kind: str
    w_bits: int
    n: int
    kernel: np.ndarray
    bias: np.ndarray | None
    scale: np.ndarray | None
    int_step: int | None
    sign: np.ndarray
    folded_bn: str | None
    grid_out: bool
    fp_per_channel: bool
    channel_spread: float
    copies: int | None = None
    kernel_all: np.ndarray | None = None
    merged_into: str | None = None
    c: np.ndarray | None = None
    dorefa: np.ndarray | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class MergedConvPlan(Record):
    """``Add([conv2(mid), proj(x)])`` as one conv over ``concat([mid, subsampled x])`` (kernel
    HWIO with the projection at the centre tap). ``shared_bn``: the BN after the add whose shift
    is in ``bias`` (the ``shared_proj_bn`` variant)."""
    main: str
    proj: str
    shared_bn: str | None
    w_bits: int
    n: int
    kernel: np.ndarray
    bias: np.ndarray
    kind: str = "merged_conv"
    grid_out: bool = True
    scale: None = None
    folded_bn: None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class GridAddPlan(Record):
    """A residual add computed on the 1/n grid of the ``a_bits`` quantiser it feeds."""
    a_bits: int
    kind: str = "grid_add"


@dataclass(frozen=True, eq=False, kw_only=True)
class GridMeanPlan(Record):
    """Global average pool of a k-bit quantiser output with output scale ``scale_out``; ``exact``:
    ``n·hw ≤ 255`` (every mean stored exactly in int8)."""
    a_bits: int
    hw: int
    scale_out: float
    exact: bool
    kind: str = "grid_mean"


@dataclass(frozen=True, eq=False, kw_only=True)
class ActPlan(Record):
    """An activation quantiser (``a_bits`` 32: a ReLU)."""
    a_bits: int
    kind: str = "act"


LayerPlan = WeightPlan | MergedConvPlan | GridAddPlan | GridMeanPlan | ActPlan
#: layer name → its plan (insertion order = the model's layer order)
Plan = dict[str, LayerPlan]


def weight_layers(plan: Plan) -> dict[str, WeightPlan]:
    """The entries of ``plan`` that store a filter (weights and merged convs)."""
    return {k: v for k, v in plan.items() if isinstance(v, (WeightPlan, MergedConvPlan))}
