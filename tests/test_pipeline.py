"""The pipeline driver end to end on a tiny configuration: every row, every public command.

One real ``python -m rolekd_tf.pipeline`` run (stage α search → teachers → stage β search →
students → exports) on 120 offline digits with a ResNet-8 and 2 epochs; then the artefacts are
opened and the summary table is recomputed from the runs' own ``metrics.json`` files.

Default suite: the two method rows (stage_alpha, stage_beta), which already run every public
command (both searches, train.py as teacher and as II-KD student, both exports): 6 steps, ~4 min.
``-m slow`` adds the run with all six rows (10 steps, ~7 min on 2 busy cores, 2026-12-02).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny-pipeline
seed: 0
data: {dataset: "embedded:digits", train_size: 120, val_size: 60, holdout_size: 60}
model: {name: resnet8, bn_momentum: 0.9}
train: {epochs: 2, batch_size: 30, optimizer: sgd, lr: 0.05, lr_milestones: [0.5]}
augment: {cutout: 8}
distill: {kd: none}
search: {population: 2, ready_interval: 1, epochs: 2, init: random}  # zeros: often all-zero → the guard stops
pipeline:
  bits: [2]
  seeds: [0]
  rows: {rows}
  export: true
"""

ALL_ROWS = ["vanilla_fp", "stage_alpha", "vanilla_lowbit", "only_iikd", "stage_beta", "student_at"]
METHOD_ROWS = ["stage_alpha", "stage_beta"]


@pytest.fixture(scope="module", params=[pytest.param(METHOD_ROWS, id="method_rows"),
                                        pytest.param(ALL_ROWS, id="all_rows", marks=pytest.mark.slow)])
def pipeline_run(request, tmp_path_factory):
    rows = request.param
    base = tmp_path_factory.mktemp("pipeline")
    cfg = base / "tiny.yaml"
    cfg.write_text(TINY.replace("{rows}", "[" + ", ".join(rows) + "]"))
    out = base / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    # From outside the repository: the driver must find search.py/train.py itself.
    proc = subprocess.run([sys.executable, "-m", "rolekd_tf.pipeline", "--config", str(cfg), "--out", str(out)],
                          cwd=base, env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, f"pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"cfg": cfg, "out": out, "stdout": proc.stdout, "base": base, "env": env, "rows": rows}


def test_every_step_printed_as_a_public_command(pipeline_run):
    cmds = [ln for ln in pipeline_run["stdout"].splitlines() if ln.startswith("$ ")]
    assert sum("search.py --role teacher" in c for c in cmds) == 1
    assert sum("search.py --role student" in c for c in cmds) == 1
    assert sum("train.py" in c for c in cmds) == len(pipeline_run["rows"])
    assert sum("-m rolekd_tf.export" in c for c in cmds) == 2  # final student + teacher


def test_artefacts_exist_and_load(pipeline_run):
    import keras

    from rolekd_tf.augment.policy import load_schedule

    out = pipeline_run["out"]
    for s in ("search-teacher", "search-student-w2a2"):
        sched = load_schedule(out / s / "schedule.json")
        assert len(sched.policies) == 2
        assert (out / s / "schedule.png").stat().st_size > 0
    rows = pipeline_run["rows"]
    runs = ([f"teacher-{n}-s0" for r, n in (("vanilla_fp", "vanilla"), ("stage_alpha", "alpha")) if r in rows]
            + [f"w2a2-{r}-s0" for r in rows if r not in ("vanilla_fp", "stage_alpha")])
    assert len(runs) == len(rows)
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    for r in runs:
        d = out / r
        for f in ("config.yaml", "metrics.json", "model.keras"):
            assert (d / f).exists(), f"{d / f} missing"
        model = keras.saving.load_model(d / "model.keras")
        y = model(x, training=False)
        y = np.asarray(y["logits"] if isinstance(y, dict) else y)
        assert y.shape == (2, 10) and np.isfinite(y).all(), r
    for r in ("teacher-alpha-s0", "w2a2-stage_beta-s0"):
        rep = json.loads((out / r / "export" / "report.json").read_text())
        assert {"model_fp32.tflite", "model_int8.tflite"} <= set(rep["files"])
        from tensorflow import lite

        interp = lite.Interpreter(model_path=str(out / r / "export" / "model_int8.tflite"))
        interp.allocate_tensors()


def test_table_numbers_come_from_metrics_files(pipeline_run):
    out = pipeline_run["out"]
    res = json.loads((out / "results.json").read_text())
    rows = pipeline_run["rows"]
    assert [t["row"] for t in res["table"]] == rows
    # two searches, one train.py per row, two exports
    assert res["steps_finished"] == res["steps_total"] == len(rows) + 4
    md = (out / "results.md").read_text()
    for t in res["table"]:
        (run,) = t["runs"]
        final = json.loads((Path(run) / "metrics.json").read_text())["final"]
        assert math.isclose(t["holdout_mean"], 100 * final["holdout_accuracy"], abs_tol=1e-9)
        assert math.isclose(t["val_mean"], 100 * final["val_accuracy"], abs_tol=1e-9)
        assert f"{t['holdout_mean']:.2f} ± 0.00" in md


def test_report_only_reprints_the_table_without_running(pipeline_run):
    out, cfg = pipeline_run["out"], pipeline_run["cfg"]
    journal = (out / "steps.jsonl").read_text()
    before = json.loads((out / "results.json").read_text())["table"]
    proc = subprocess.run([sys.executable, "-m", "rolekd_tf.pipeline", "--config", str(cfg), "--out", str(out),
                           "--report"], cwd=pipeline_run["base"], capture_output=True, text=True, timeout=300,
                          env=pipeline_run["env"] | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "steps.jsonl").read_text() == journal  # nothing was run
    after = json.loads((out / "results.json").read_text())["table"]
    assert [t["holdout_mean"] for t in after] == [t["holdout_mean"] for t in before]
    n = len(pipeline_run["rows"]) + 4
    assert f"{n}/{n} steps finished" in proc.stdout


def test_report_on_a_partial_run_leaves_out_unfinished_rows(pipeline_run, tmp_path):
    """--report on a copy where one run never finished: that row disappears, the rest stay."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(pipeline_run["out"], out)
    m = out / "w2a2-stage_beta-s0" / "metrics.json"
    m.write_text(json.dumps(json.loads(m.read_text()) | {"finished": False}))
    proc = subprocess.run([sys.executable, "-m", "rolekd_tf.pipeline", "--config", str(pipeline_run["cfg"]),
                           "--out", str(out), "--report"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=pipeline_run["env"] | {"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [t["row"] for t in json.loads((out / "results.json").read_text())["table"]]
    assert rows == [r for r in pipeline_run["rows"] if r != "stage_beta"]
    assert "PARTIAL" in (out / "results.md").read_text()
