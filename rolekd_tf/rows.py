"""The rows of the paper's Tables 1–4 as pipeline rows: one typed table, the single source of truth.

A :class:`Row` says how one table row is trained: which network (the config's ``model.name`` or a
Table 4 student), at which precision (one run per ``pipeline.bits`` or full precision), with which
KD loss, which augmentation schedule (the baseline only, the teacher's A_T or a student's A_S),
initialised from the teacher or from scratch, and with which recipe (the config's base recipe or
the base plus ``pipeline.student_set``). :mod:`rolekd_tf.pipeline` turns rows into commands; the
config validator accepts exactly :data:`ROW_NAMES`.

Choices where the paper leaves room (docs/PROTOCOL.md lists them as differences):

* Rows trained **from scratch** (``vanilla_lowbit``, ``alpha_lowbit``, Table 4 students) use the
  config's base recipe (the paper's from-scratch recipe: SGD 0.1), not ``pipeline.student_set``
  (Adam/SGD 1e-3 is the recipe for a student that starts from the teacher's weights).
* Table 1/3 KD rows "with A_S" use the schedule of the stage β search that ran with II-KD for the
  same student network (``pipeline.student_search: iikd``, the paper's stage β): one search per
  bit width serves every KD loss. ``student_search: per_kd`` searches one A_S per KD loss instead.
* Every student row distils from the same teacher: the stage α teacher when ``stage_alpha`` is in
  the rows, else ``vanilla_fp``.

Aliases (``same_as``) name the same runs under another table: Table 1's II-KD row *is* stage β,
Table 3's "with A_S" rows *are* Table 1's rows. The pipeline trains each run once.
"""
from __future__ import annotations

from dataclasses import dataclass

#: Table 1/3 KD losses other than II-KD (``distill.kd`` values) and how the paper names them.
KD_BASELINES = {"soft": "Soft labels", "dml": "DML", "rkd": "RKD", "mhgd": "MHGD", "svd": "KD-SVD"}
#: Table 4's full-precision students (paper §5.6; docs/METHOD.md §4).
TABLE4_STUDENTS = ("wrn-16-2", "wrn-16-4", "preresnet56", "preresnet32", "preresnet44")

SCHEDULES = ("baseline", "A_T", "A_S")  #: baseline augmentation only | teacher's | student's search
INITS = ("scratch", "teacher")
RECIPES = ("base", "student")  #: the config as written | plus pipeline.student_set


@dataclass(frozen=True)
class Row:
    """One table row. ``title`` may hold ``{b}`` (the bit width)."""

    name: str
    title: str
    table: str  #: paper table: "1", "2", "3" or "4"
    kd: str = "none"  #: distill.kd of the run (none = no teacher)
    schedule: str = "baseline"
    init: str = "scratch"
    recipe: str = "base"
    lowbit: bool = True  #: one run per pipeline.bits; False = full precision (32/32)
    model: str | None = None  #: network of the run; None = the config's model.name
    teacher: bool = False  #: this row trains a candidate teacher (vanilla_fp, stage_alpha)
    same_as: str | None = None  #: alias: the runs of that row, listed under this row's table

    def __post_init__(self):
        # the table is code: a typo in it is a bug, not a user error
        assert self.schedule in SCHEDULES and self.init in INITS and self.recipe in RECIPES, self
        assert not (self.teacher and self.kd != "none"), self

    @property
    def adapter(self) -> bool:
        """1×1 adapters on the KD taps: a student network other than the teacher's (Table 4) has
        other channel counts; the Distiller adds adapters only at taps whose widths differ."""
        return self.model is not None and self.kd != "none"


def _table() -> dict[str, Row]:
    rows = [
        # Table 2 (and the teachers every other table distils from)
        Row("vanilla_fp", "Vanilla FP32 teacher", "2", lowbit=False, teacher=True),
        Row("stage_alpha", "Stage α teacher (A_T) FP32", "2", schedule="A_T", lowbit=False, teacher=True),
        Row("vanilla_lowbit", "Vanilla {b}-bit (from scratch)", "2"),
        Row("alpha_lowbit", "Stage α {b}-bit (A_T, no KD, from scratch)", "2", schedule="A_T"),
        Row("only_iikd", "Only II-KD {b}-bit", "2", kd="ii", init="teacher", recipe="student"),
        Row("stage_beta", "Stage β {b}-bit (II-KD + A_S)", "2", kd="ii", schedule="A_S", init="teacher",
            recipe="student"),
        # Table 3's II-KD with the teacher's schedule (name kept from the first pipeline)
        Row("student_at", "{b}-bit II-KD + A_T (Table 3)", "3", kd="ii", schedule="A_T", init="teacher",
            recipe="student"),
        Row("t1_ii", "Table 1: {b}-bit II-KD + A_S", "1", same_as="stage_beta"),
        Row("t3_ii_as", "Table 3: {b}-bit II-KD + A_S", "3", same_as="stage_beta"),
        Row("t3_ii_at", "Table 3: {b}-bit II-KD + A_T", "3", same_as="student_at"),
    ]
    for kd, label in KD_BASELINES.items():
        rows += [
            Row(f"t1_{kd}", f"Table 1: {{b}}-bit {label} + A_S", "1", kd=kd, schedule="A_S", init="teacher",
                recipe="student"),
            Row(f"t3_{kd}_at", f"Table 3: {{b}}-bit {label} + A_T", "3", kd=kd, schedule="A_T",
                init="teacher", recipe="student"),
            Row(f"t3_{kd}_as", f"Table 3: {{b}}-bit {label} + A_S", "3", same_as=f"t1_{kd}"),
        ]
    for m in TABLE4_STUDENTS:
        rows += [
            Row(f"t4_{m}", f"Table 4: FP32 student {m} (II-KD + A_S)", "4", kd="ii", schedule="A_S",
                lowbit=False, model=m),
            Row(f"t4_{m}_vanilla", f"Table 4: FP32 student {m} alone", "4", lowbit=False, model=m),
        ]
    return {r.name: r for r in rows}


#: name → Row, in the order the report lists them.
ROW_TABLE: dict[str, Row] = _table()
ROW_NAMES: tuple[str, ...] = tuple(ROW_TABLE)


def without_schedule(name: str) -> Row | None:
    """The row ``name`` repeats exactly when its searched schedule is all zero (the same training
    with baseline augmentation only), or None when the table has no such row (e.g. ``t1_soft``)."""
    r = canonical(name)
    if r.schedule == "baseline":
        return None
    same = ("kd", "init", "recipe", "lowbit", "model", "teacher")
    return next((o for o in ROW_TABLE.values() if o.same_as is None and o.schedule == "baseline"
                 and all(getattr(o, k) == getattr(r, k) for k in same)), None)


def canonical(name: str) -> Row:
    """The row whose runs ``name`` shows (itself, or the row it is an alias of)."""
    row = ROW_TABLE[name]
    return ROW_TABLE[row.same_as] if row.same_as else row
