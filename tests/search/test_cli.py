"""search.py: user errors (fast) and real tiny searches for both roles (slow)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "quickstart.yaml")
TINY = ["--set", "data.train_size=200", "--set", "data.val_size=200", "--set", "data.holdout_size=0",
        "--set", "train.batch_size=50", "--set", "search.population=4", "--set", "search.epochs=4",
        "--set", "search.ready_interval=2"]


def run_main(args):
    from rolekd_tf.search.run import main

    return main(args)


def test_student_needs_teacher(tmp_path):
    with pytest.raises(ConfigError, match="--teacher"):
        run_main(["--role", "student", "--config", CFG, "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("setting,match", [("search.population=1", "population"),
                                           ("search.ready_interval=9", "ready_interval"),
                                           ("search.init=uniform", r"search.init='uniform' is not allowed")])
def test_bad_search_settings(tmp_path, setting, match):
    with pytest.raises(ConfigError, match=match):
        run_main(["--role", "teacher", "--config", CFG, "--set", setting, "--set", "search.epochs=8",
                  "--out", str(tmp_path / "x")])


def test_existing_dir_with_other_config_refused(tmp_path):
    from rolekd_tf.config import load_config

    out = tmp_path / "s"
    out.mkdir()
    (out / "config.yaml").write_text(load_config(CFG, ["search.population=8"]).to_yaml())
    (out / "search.json").write_text(json.dumps({"role": "teacher", "teacher": None}))
    with pytest.raises(CheckpointError, match="search.population: 8 there, 4 now"):
        run_main(["--role", "teacher", "--config", CFG, "--out", str(out)])


def test_cli_error_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "search.py", "--role", "student", "--config", CFG, "--out",
                        str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --role student needs")


def _check_outputs(out: Path, epochs=4):
    from rolekd_tf.augment.policy import load_schedule

    s = json.loads((out / "summary.json").read_text())
    sched = load_schedule(out / "schedule.json")
    assert sched.epochs == epochs
    if s["best_lineage_log"]:
        assert load_schedule(s["best_lineage_log"], epochs=epochs).as_array().tolist() == sched.as_array().tolist()
    assert (out / "schedule.png").stat().st_size > 0
    assert (out / "config.yaml").exists() and list((out / "tb").glob("member_*"))
    assert len(list((out / "pbt" / "members").glob("member_*.json"))) == 4
    return s


@pytest.mark.slow
def test_teacher_and_student_search_end_to_end(tmp_path):
    """(~5 min on 2 busy cores) teacher search → teacher run → student search, via the CLIs."""
    t_out = tmp_path / "teacher-search"
    r = subprocess.run([sys.executable, "search.py", "--role", "teacher", "--config", CFG, *TINY,
                        "--out", str(t_out)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "PBT search summary" in r.stdout
    _check_outputs(t_out)
    # re-running the finished search is a no-op that rewrites the same schedule
    before = (t_out / "schedule.json").read_text()
    r = subprocess.run([sys.executable, "search.py", "--role", "teacher", "--config", CFG, *TINY,
                        "--out", str(t_out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and (t_out / "schedule.json").read_text() == before
    # a teacher run for stage β
    run = tmp_path / "teacher"
    r = subprocess.run([sys.executable, "train.py", "--config", CFG, "--set", "data.train_size=200",
                        "--set", "data.val_size=200", "--set", "data.holdout_size=0",
                        "--set", "train.batch_size=50", "--set", "train.epochs=1", "--out", str(run)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s_out = tmp_path / "student-search"
    r = subprocess.run([sys.executable, "search.py", "--role", "student", "--config", CFG, *TINY,
                        "--set", "model.w_bits=2", "--set", "model.a_bits=2", "--set", "distill.kd=ii",
                        "--teacher", str(run), "--out", str(s_out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _check_outputs(s_out)


@pytest.mark.parametrize("classes,shape,match", [(5, (32, 32, 3), "predicts 5 classes"),
                                                 (10, (16, 16, 3), "takes input")])
def test_incompatible_teacher_refused(tmp_path, classes, shape, match):
    from rolekd_tf.config import load_config, save_config
    from rolekd_tf.fileio import save_model_atomic
    from rolekd_tf.models import build_model

    run = tmp_path / "teacher"
    run.mkdir()
    save_model_atomic(build_model("resnet20", num_classes=classes, input_shape=shape), run / "model.keras")
    save_config(load_config(CFG), run / "config.yaml")  # a run directory: train.py writes both
    out = tmp_path / "s"
    with pytest.raises(CheckpointError, match=match):
        run_main(["--role", "student", "--config", CFG, *TINY, "--teacher", str(run), "--out", str(out)])
    assert not out.exists()  # nothing written


def test_search_uses_its_own_data_and_never_reads_the_test_split(cifar10_split_tar, tmp_path, monkeypatch):
    """search.train_size/val_size decide the members' data (recorded in summary.json); the test
    split of a dataset that has one is never loaded (spy on the image-folder loader) nor held."""
    import rolekd_tf.training as training
    from rolekd_tf.data import datasets as dsmod

    tar, _ = cifar10_split_tar
    loads, tasks = [], []
    real_load = dsmod.load_imagefolder
    monkeypatch.setattr(dsmod, "load_imagefolder",
                        lambda *a, **k: (loads.append(k.get("split", "train")), real_load(*a, **k))[1])

    class SpyTask(training.Task):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            tasks.append(self)

    monkeypatch.setattr(training, "Task", SpyTask)
    out = tmp_path / "s"
    run_main(["--role", "teacher", "--config", CFG, "--set", f"data.dataset=imagefolder:{tar}",
              "--set", "data.train_size=250", "--set", "data.val_size=50", "--set", "data.holdout_size=0",
              "--set", "search.train_size=40", "--set", "search.val_size=30", "--set", "train.batch_size=20",
              "--set", "model.name=resnet8", "--set", "augment.cutout=0", "--set", "search.population=2",
              "--set", "search.epochs=1", "--set", "search.ready_interval=1", "--out", str(out), "--quiet"])
    assert loads and set(loads) == {"train"}, loads          # the test split was never read
    (task,) = tasks
    assert len(task.splits.x_test) == 0 and task.cfg.data.test_split == "none"
    assert len(task.splits.x_train) == 40 and len(task.splits.x_val) == 30
    assert task.steps_per_epoch == 2                          # members train on 40 images, not 250
    d = json.loads((out / "summary.json").read_text())["data"]
    assert d["train_images"] == 40 and d["val_images"] == 30 and d["from"] == "search.train_size/search.val_size"
    # the search's config.yaml keeps the user's config: the final trainings read data.* from it
    from rolekd_tf.config import read_yaml

    saved = read_yaml(out / "config.yaml")
    assert saved["data"]["train_size"] == 250 and saved["search"]["train_size"] == 40
    assert saved["data"]["test_split"] is None
