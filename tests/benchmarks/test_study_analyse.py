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


def test_clean_train_column_reads_train_eval(tmp_path, monkeypatch):
    from rolekd_tf.config import load_config

    monkeypatch.setenv("ROLEKD_CIFAR10_TAR", "cifar10.tar.gz")  # the config names it; nothing is read

    for s in (0, 1):
        _run(tmp_path, "only_iikd", s, 0.5)
    (tmp_path / "w2a2-only_iikd-s0" / "train_eval.json").write_text(json.dumps({"train_accuracy": 0.9, "images": 10}))
    (tmp_path / "w2a2-only_iikd-s1" / "train_eval.json").write_text(json.dumps({"train_accuracy": 0.7, "images": 10}))
    md = analyse.report(tmp_path, load_config(str(ROOT / "configs" / "study_cifar10_cpu.yaml"), []))
    row = next(l for l in md.splitlines() if l.startswith("| w2a2 only_iikd"))
    # clean train 90, 70 → 80.00 ± 14.14 over 2 seeds; val is 60 in both → gap +20
    assert "| 80.00 ± 14.14 (2) | +20.00 |" in row, row


def test_train_eval_matches_an_independent_prediction(tmp_path):
    """train_eval.py's clean training accuracy = argmax of the model's logits on the run's own
    training images normalised by hand; the result is cached in the run directory."""
    import numpy as np

    import train_eval
    from rolekd_tf.models import input_normalisation
    from rolekd_tf.training import load_run_model
    from tests.export._tiny_run import make_run

    run, s = make_run(tmp_path / "run", model="resnet8", epochs=1, train_size=256, val_size=64)
    (run / "metrics.json").write_text(json.dumps({"finished": True}))
    assert train_eval.finished_runs(tmp_path) == [run]
    assert train_eval.main(["--out", str(tmp_path)]) == 0
    got = json.loads((run / "train_eval.json").read_text())
    mean, std = (np.asarray(v, np.float32) for v in input_normalisation(False, s.info.mean, s.info.std))
    x = (s.x_train.astype(np.float32) / 255.0 - mean) / std
    logits = load_run_model(run).predict(x, batch_size=256, verbose=0)
    want = float(np.mean(np.argmax(logits, -1) == s.y_train))
    assert got["images"] == 256 and got["train_accuracy"] == pytest.approx(want, abs=1e-6)
    (run / "train_eval.json").write_text(json.dumps({"train_accuracy": 0.123, "images": 256}))
    assert train_eval.clean_train_accuracy(run)["train_accuracy"] == 0.123  # cached: not re-evaluated


def test_teacher_comparison_pairs_the_pipelines_teacher_runs(tmp_path, monkeypatch):
    """teacher-alpha-sN − teacher-vanilla-sN, paired by seed (a teacher without its pair left out),
    reported beside the student comparisons and in the verdict; rows grouped by role."""
    from rolekd_tf.config import load_config

    monkeypatch.setenv("ROLEKD_CIFAR10_TAR", "cifar10.tar.gz")
    for s, (a, v) in enumerate([(0.59, 0.53), (0.60, 0.55), (0.58, 0.55)]):
        for row, acc in (("alpha", a), ("vanilla", v)):
            d = tmp_path / f"teacher-{row}-s{s}"
            d.mkdir()
            (d / "metrics.json").write_text(json.dumps({
                "finished": True, "final": {"holdout_accuracy": acc},
                "history": {"accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]}}))
    (tmp_path / "teacher-alpha-s5").mkdir()
    (tmp_path / "teacher-alpha-s5" / "metrics.json").write_text(json.dumps({
        "finished": True, "final": {"holdout_accuracy": 0.9}, "history": {"accuracy": [0.7], "val_accuracy": [0.6]}}))
    (tc,) = analyse.paired(analyse.teacher_runs(tmp_path), (analyse.TEACHER_COMPARISON,))
    assert tc.seeds == [0, 1, 2] and tc.diffs == pytest.approx([6.0, 5.0, 3.0])
    assert tc.half_width == pytest.approx(4.302653 * math.sqrt(7 / 3) / math.sqrt(3), rel=1e-5)
    assert tc.verdict().startswith("positive")  # 4.67 ± 3.79
    md = analyse.report(tmp_path, load_config(str(ROOT / "configs" / "study_cifar10_cpu.yaml"), []))
    assert "| stage-α teacher − vanilla teacher (A_T for the teacher) | 3 | +6.00, +5.00, +3.00 |" in md
    assert "Stage α helps the teacher" in md and "mean +4.67 points" in md
    assert any(l.startswith("| teacher alpha | 4 |") for l in md.splitlines())
