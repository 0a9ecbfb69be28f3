"""benchmarks/study/analyse.py: paired differences, 95 % t-intervals and seed sizing, checked
against hand-computed values (t(0.975, 2) = 4.302653, t(0.975, 6) = 2.446912)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "study"))

import analyse  # noqa: E402


def _run(out: Path, row: str, seed: int, holdout: float) -> None:
    d = out / f"w2a2-{row}-s{seed}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({
        "finished": True, "final": {"holdout_accuracy": holdout},
        "history": {"accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}}))


def test_paired_interval_matches_hand_computation(tmp_path):
    # stage_beta − only_iikd = +1, +2, +3 points; stage_beta − student_at = 0, 0, 0
    for s, (b, o) in enumerate([(0.51, 0.50), (0.52, 0.50), (0.53, 0.50)]):
        _run(tmp_path, "stage_beta", s, b)
        _run(tmp_path, "only_iikd", s, o)
        _run(tmp_path, "student_at", s, b)
    _run(tmp_path, "only_iikd", 3, 0.9)  # a seed without its pair is left out
    c1, c2 = analyse.paired(analyse.student_runs(tmp_path, 2))
    assert c1.seeds == [0, 1, 2] and c1.diffs == pytest.approx([1.0, 2.0, 3.0])
    assert c1.mean == pytest.approx(2.0) and c1.sd == pytest.approx(1.0)
    assert c1.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)  # 2.484
    assert c1.verdict().startswith("not resolved")  # [-0.48, 4.48]
    assert c2.mean == 0 and c2.half_width == 0
    assert c2.verdict().startswith("no effect of 1 point")


def test_verdict_signs():
    pos = analyse.Paired("x", [0, 1, 2, 3], [2.0, 2.5, 3.0, 2.2])
    neg = analyse.Paired("x", [0, 1, 2, 3], [-2.0, -2.5, -3.0, -2.2])
    assert pos.verdict().startswith("positive") and neg.verdict().startswith("negative")
    assert analyse.Paired("x", [0], [1.0]).verdict() == "not enough seeds yet"


def test_seeds_needed():
    # sd 1: n = 6 gives 2.5706/√6 = 1.049 ≥ 1, n = 7 gives 2.4469/√7 = 0.925 < 1
    assert analyse.seeds_needed(1.0) == 7
    assert analyse.seeds_needed(1.0, n_min=9) == 9
    assert analyse.seeds_needed(5.0, n_max=12) == 12
