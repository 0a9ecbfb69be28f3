"""The pipeline driver end to end on a tiny configuration: every row, every public command.

One real ``python -m rolekd_tf.pipeline`` run (stage α search → teachers → stage β search →
students → exports) on 120 offline digits with a ResNet-8 and 2 epochs; then the artefacts are
opened and the summary table is recomputed from the runs' own ``metrics.json`` files.

Default suite: the two method rows (stage_alpha, stage_beta), which already run every public
command (both searches, train.py as teacher and as II-KD student, both exports): 6 steps, ~4 min.
``-m slow`` adds the run with the default rows (Table 2 + student_at: 11 steps).

The plan itself (which command each row of Tables 1–4 runs, aliases, ``teacher_schedule``,
``--dry-run``, the paper column of the report) is checked without running anything, in seconds.
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

ALL_ROWS = ["vanilla_fp", "stage_alpha", "vanilla_lowbit", "alpha_lowbit", "only_iikd", "stage_beta", "student_at"]
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


def test_report_has_a_test_column_from_metrics_files(tmp_path):
    """summarise: "test acc. %" = mean ± std (n−1) over seeds of each run's top-level
    ``test_accuracy``; "–" for rows whose runs have none (no test split, or older runs)."""
    from rolekd_tf.pipeline import summarise

    def run(name, final, **top):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"final": final, "wall_time_s": 1.0, "finished": True, **top}))
        (d / "model.keras").write_bytes(b"x" * 1000)
        return d

    base = {"val_accuracy": 0.5, "holdout_accuracy": 0.4, "params": 10}
    accs = [0.8125, 0.75, 0.78125]
    steps = [{"kind": "train", "row": "vanilla_fp", "bits": 32, "seed": s,
              "dir": run(f"fp-s{s}", base, test_accuracy=a, test_examples=10000)} for s, a in enumerate(accs)]
    steps.append({"kind": "train", "row": "stage_beta", "bits": 2, "seed": 0,
                  "dir": run("beta-s0", base, test_accuracy=None, test_examples=0)})
    steps.append({"kind": "train", "row": "only_iikd", "bits": 2, "seed": 0, "dir": run("old-s0", base)})
    table, md = summarise(None, steps)
    by = {t["row"]: t for t in table}
    ref = 100 * np.asarray(accs)
    assert by["vanilla_fp"]["test_mean"] == pytest.approx(ref.mean(), abs=1e-9)
    assert by["vanilla_fp"]["test_std"] == pytest.approx(ref.std(ddof=1), abs=1e-9)
    assert by["stage_beta"]["test_mean"] is None and by["only_iikd"]["test_mean"] is None
    header, _, *lines = md.splitlines()
    assert "test acc. %" in header
    col = [c.strip() for c in header.split("|")].index("test acc. % (mean ± std)")
    cells = {ln.split("|")[1].strip(): ln.split("|")[col].strip() for ln in lines}
    assert cells["Vanilla FP32 teacher"] == f"{ref.mean():.2f} ± {ref.std(ddof=1):.2f}"
    assert cells["Stage β 2-bit (II-KD + A_S)"] == "–" and cells["Only II-KD 2-bit"] == "–"


# ------------------------------------------------------------------ the plan, without running it

def _plan(tmp_path, rows, *, bits=(2,), seeds=(0,), extra=()):
    from rolekd_tf.config import load_config
    from rolekd_tf.pipeline import plan

    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY.replace("{rows}", "[" + ", ".join(rows) + "]"))
    sets = [f"pipeline.bits={list(bits)}", f"pipeline.seeds={list(seeds)}", *extra]
    cfg = load_config(cfg_path, sets)
    return cfg, plan(cfg, str(cfg_path), tmp_path / "out", sets)


def _flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def _sets(cmd):
    return [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]


STUDENT_RECIPE = "train.optimizer=adam"  # first entry of pipeline.student_set (the default)


@pytest.mark.parametrize("row,init,teacher,schedule,kd,recipe", [
    # Table 2: vanilla k-bit and stage α k-bit are DoReFa nets trained from scratch, no KD
    ("vanilla_lowbit", False, False, None, "none", False),
    ("alpha_lowbit", False, False, "search-teacher", "none", False),
    ("only_iikd", True, True, None, "ii", True),
    ("stage_beta", True, True, "search-student-w2a2", "ii", True),
    ("student_at", True, True, "search-teacher", "ii", True),
    ("t1_mhgd", True, True, "search-student-w2a2", "mhgd", True),  # A_S of the II-KD search
    ("t3_dml_at", True, True, "search-teacher", "dml", True),
    ("t3_svd_as", True, True, "search-student-w2a2", "svd", True),
])
def test_each_row_runs_its_definition(tmp_path, row, init, teacher, schedule, kd, recipe):
    _, steps = _plan(tmp_path, ["stage_alpha", row])
    (st,) = [s for s in steps if s["kind"] == "train" and s.get("bits") == 2]
    cmd = st["cmd"]
    t_dir = str(tmp_path / "out" / "teacher-alpha-s0")
    assert _flag(cmd, "--init") == (t_dir if init else None)
    assert _flag(cmd, "--teacher") == (t_dir if teacher else None)
    sched = _flag(cmd, "--schedule")
    assert sched == (None if schedule is None else str(tmp_path / "out" / schedule / "schedule.json"))
    assert f"distill.kd={kd}" in _sets(cmd)
    assert (STUDENT_RECIPE in _sets(cmd)) == recipe
    assert {"model.w_bits=2", "model.a_bits=2"} <= set(_sets(cmd))
    assert st["row"] == canonical_name(row)


def canonical_name(row):
    from rolekd_tf.rows import canonical

    return canonical(row).name


def test_table4_students_use_their_own_network_search_and_adapters(tmp_path):
    _, steps = _plan(tmp_path, ["stage_alpha", "t4_wrn-16-2", "t4_wrn-16-2_vanilla"])
    train = {s["row"]: s for s in steps if s["kind"] == "train"}
    kd, alone = train["t4_wrn-16-2"], train["t4_wrn-16-2_vanilla"]
    for st in (kd, alone):
        assert {"model.name=wrn-16-2", "model.w_bits=32", "model.a_bits=32"} <= set(_sets(st["cmd"]))
        assert _flag(st["cmd"], "--init") is None  # another network: nothing to copy
        assert st["bits"] == 32 and st["dir"].name.startswith("fp32-")
    assert "distill.adapter=true" in _sets(kd["cmd"]) and "distill.adapter=true" not in _sets(alone["cmd"])
    assert _flag(kd["cmd"], "--teacher").endswith("teacher-alpha-s0")
    (search,) = [s for s in steps if s["kind"] == "search" and s["dir"].name.startswith("search-student")]
    assert search["dir"].name == "search-student-fp32-wrn-16-2"
    assert _flag(kd["cmd"], "--schedule") == str(search["dir"] / "schedule.json")
    assert {"model.name=wrn-16-2", "distill.kd=ii", "distill.adapter=true"} <= set(_sets(search["cmd"]))
    assert search["init"] is None


def test_aliases_add_no_runs(tmp_path):
    _, a = _plan(tmp_path / "a", ["stage_alpha", "stage_beta", "t1_soft"], bits=(2, 4))
    _, b = _plan(tmp_path / "b", ["stage_alpha", "stage_beta", "t1_soft", "t1_ii", "t3_ii_as", "t3_soft_as"],
                 bits=(2, 4))
    rel = lambda steps, root: [(s["kind"], str(s["dir"].relative_to(root))) for s in steps]  # noqa: E731
    assert rel(a, tmp_path / "a") == rel(b, tmp_path / "b")
    # one stage β search per bit width serves II-KD and soft labels (student_search: iikd)
    assert [s["dir"].name for s in a if s["kind"] == "search"] == [
        "search-teacher", "search-student-w2a2", "search-student-w4a4"]


def test_per_kd_student_search(tmp_path):
    _, steps = _plan(tmp_path, ["stage_alpha", "stage_beta", "t1_soft"], extra=["pipeline.student_search=per_kd"])
    searches = {s["dir"].name: s for s in steps if s["kind"] == "search"}
    assert set(searches) == {"search-teacher", "search-student-w2a2", "search-student-w2a2-soft"}
    assert "distill.kd=soft" in _sets(searches["search-student-w2a2-soft"]["cmd"])
    soft = next(s for s in steps if s["kind"] == "train" and s["row"] == "t1_soft")
    assert _flag(soft["cmd"], "--schedule").endswith("search-student-w2a2-soft/schedule.json")


def test_teacher_schedule_replaces_the_stage_alpha_search(tmp_path):
    sched = tmp_path / "a_t.json"
    _, steps = _plan(tmp_path, ["stage_alpha", "alpha_lowbit", "student_at"],
                     extra=[f"pipeline.teacher_schedule={sched}"])
    assert not any(s["dir"].name == "search-teacher" for s in steps)
    users = [s for s in steps if s["kind"] == "train"]
    assert len(users) == 3 and all(_flag(s["cmd"], "--schedule") == str(sched) for s in users)


def test_missing_teacher_schedule_fails_before_any_step(tmp_path):
    from rolekd_tf.errors import RolekdError
    from rolekd_tf.pipeline import run_pipeline

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY.replace("{rows}", "[stage_alpha]"))
    out = tmp_path / "out"
    with pytest.raises(RolekdError, match="teacher_schedule"):
        run_pipeline(str(cfg_path), str(out), [f"pipeline.teacher_schedule={tmp_path / 'missing.json'}"])
    assert not out.exists()


def test_rows_that_need_a_teacher_need_a_teacher_row(tmp_path):
    from rolekd_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="only_iikd.*teacher"):
        _plan(tmp_path, ["vanilla_lowbit", "only_iikd"])
    _plan(tmp_path, ["vanilla_lowbit", "alpha_lowbit"])  # from scratch: no teacher needed


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    from rolekd_tf.pipeline import dry_run

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY.replace("{rows}", "[stage_alpha, vanilla_lowbit, stage_beta]"))
    before = sorted(tmp_path.rglob("*"))
    res = dry_run(str(cfg_path), str(tmp_path / "out"), [])
    assert sorted(tmp_path.rglob("*")) == before
    text = capsys.readouterr().out
    import shlex

    for st in res["steps"]:
        assert "$ " + " ".join(shlex.quote(str(c)) for c in st["cmd"]) in text
    assert text.count("search split: train 120 / val 60") == 2  # both searches
    assert text.count("full data: train 120 / val 60 / holdout 60") == 3  # the three trainings
    assert text.count("estimate: ") == len(res["steps"])
    assert res["gpu_hours"] > 0


def test_search_steps_read_the_search_split(tmp_path):
    """search.train_size/val_size (h3's SearchConfig fields) set the search's data; trainings keep
    data.*. Checked on a stand-in config object so it holds before those fields are merged."""
    import dataclasses
    from types import SimpleNamespace

    from rolekd_tf.config import load_config
    from rolekd_tf.dryrun import describe_data, step_scale

    cfg = load_config(None, ["data.dataset=cifar10", "data.val_size=1000"])
    cfg = SimpleNamespace(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    cfg.search = SimpleNamespace(train_size=4000, val_size=46000)
    s = step_scale(cfg, {"scale": "search"})
    assert (s.train, s.val, s.test) == (4000, 46000, None)
    f = step_scale(cfg, {"scale": "full"})
    assert (f.train, f.val, f.holdout, f.test) == (49000, 1000, 0, 10000)
    assert "search split: train 4,000 / val 46,000 (search.train_size/val_size)" in describe_data(cfg, {"scale": "search"})


def test_report_puts_the_paper_number_beside_each_row():
    from rolekd_tf.config import load_config
    from rolekd_tf.pipeline import paper_comparison

    cfg = load_config(None, ["data.dataset=cifar100", "model.name=resnet18", "pipeline.bits=[4]",
                             "pipeline.rows=[stage_alpha, stage_beta, t1_ii, student_at, alpha_lowbit]"])
    table = [{"row": "stage_alpha", "bits": 32, "test_mean": 75.0, "test_std": 0.1, "holdout_mean": None},
             {"row": "stage_beta", "bits": 4, "holdout_mean": 70.0, "holdout_std": 0.5},
             {"row": "student_at", "bits": 4, "test_mean": 71.0, "test_std": 0.0}]
    rows, md = paper_comparison(cfg, table)
    got = {(r["row"], r["bits"]): (r["ours_mean"], r["measured_on"], r["paper"]) for r in rows}
    assert got == {("stage_alpha", 32): (75.0, "test", 75.19),
                   ("stage_beta", 4): (70.0, "holdout", 74.21),
                   ("t1_ii", 4): (70.0, "holdout", 74.21),  # Table 1's II-KD row = stage β's runs
                   ("student_at", 4): (71.0, "test", 73.46),
                   ("alpha_lowbit", 4): (None, "–", None)}
    assert "| 1 | Table 1: 4-bit II-KD + A_S | 4/4 | 70.00 ± 0.50 | holdout | 74.21 |" in md
