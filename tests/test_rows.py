"""The row table: every name the config accepts, aliases, and what each row trains."""
from __future__ import annotations

import pytest

from rolekd_tf.rows import KD_BASELINES, ROW_NAMES, ROW_TABLE, TABLE4_STUDENTS, canonical, without_schedule


def test_the_first_pipeline_names_still_exist():
    for name in ("vanilla_fp", "stage_alpha", "vanilla_lowbit", "only_iikd", "stage_beta", "student_at"):
        assert name in ROW_NAMES


def test_every_table_has_its_rows():
    tables = {n: r.table for n, r in ROW_TABLE.items()}
    assert {n for n, t in tables.items() if t == "2"} == {
        "vanilla_fp", "stage_alpha", "vanilla_lowbit", "alpha_lowbit", "only_iikd", "stage_beta"}
    for kd in list(KD_BASELINES) + ["ii"]:
        assert tables[f"t1_{kd}"] == "1"
        assert tables[f"t3_{kd}_at"] == tables[f"t3_{kd}_as"] == "3"
    for m in TABLE4_STUDENTS:
        assert tables[f"t4_{m}"] == "4"


def test_table2_definitions():
    """docs/METHOD.md §2: vanilla k-bit from scratch without learned augmentation; stage α k-bit = A_T,
    no KD; only II-KD = no learned augmentation; stage β = II-KD + A_S."""
    def spec(n):
        r = canonical(n)
        return (r.kd, r.schedule, r.init, r.lowbit)

    assert spec("vanilla_lowbit") == ("none", "baseline", "scratch", True)
    assert spec("alpha_lowbit") == ("none", "A_T", "scratch", True)
    assert spec("only_iikd") == ("ii", "baseline", "teacher", True)
    assert spec("stage_beta") == ("ii", "A_S", "teacher", True)
    assert spec("stage_alpha") == ("none", "A_T", "scratch", False)


@pytest.mark.parametrize("kd", list(KD_BASELINES) + ["ii"])
def test_table1_and_table3_share_runs(kd):
    """Table 1's rows are Table 3's "with A_S" rows: one run, two table entries."""
    a_s = canonical(f"t3_{kd}_as")
    assert canonical(f"t1_{kd}") is a_s
    assert (a_s.kd, a_s.schedule) == (kd, "A_S")
    a_t = canonical(f"t3_{kd}_at")
    assert (a_t.kd, a_t.schedule, a_t.init) == (kd, "A_T", "teacher")


def test_table4_students_are_foreign_full_precision_networks():
    for m in TABLE4_STUDENTS:
        r = ROW_TABLE[f"t4_{m}"]
        assert (r.model, r.lowbit, r.init, r.kd, r.adapter) == (m, False, "scratch", "ii", True)
        v = ROW_TABLE[f"t4_{m}_vanilla"]
        assert (v.model, v.kd, v.schedule, v.adapter) == (m, "none", "baseline", False)


def test_without_schedule():
    assert without_schedule("stage_alpha").name == "vanilla_fp"
    assert without_schedule("alpha_lowbit").name == "vanilla_lowbit"
    assert without_schedule("stage_beta").name == "only_iikd"
    assert without_schedule("t3_ii_at").name == "only_iikd"
    assert without_schedule("t1_soft") is None and without_schedule("only_iikd") is None


def test_titles_take_only_the_bit_width():
    for r in ROW_TABLE.values():
        r.title.format(b=4)  # no other placeholder
