"""(slow, ~3 min) search.py itself in Keras Tuner chief/worker mode: a chief and 2 workers on
loopback train a tiny real model (ResNet-8 on the embedded digits) and produce one consistent search."""
import json
import sys

import pytest

from tests.search._chief_workers import run_chief_and_workers

SETS = ["--set", "model.name=resnet8", "--set", "data.train_size=128", "--set", "data.val_size=64",
        "--set", "data.holdout_size=0", "--set", "train.batch_size=32", "--set", "search.population=4",
        "--set", "search.epochs=4", "--set", "search.ready_interval=2", "--set", "search.seed=3"]


@pytest.mark.slow
def test_search_py_chief_and_two_workers(tmp_path):
    out = tmp_path / "search"
    cmd = [sys.executable, "search.py", "--role", "teacher", "--config", "configs/quickstart.yaml",
           *SETS, "--out", str(out)]
    outs = run_chief_and_workers(cmd, timeout=900)
    # Both workers trained segments; the chief only served the oracle.
    assert "gen 0" in outs["tuner0"] + outs["tuner1"]
    summary = json.loads((out / "summary.json").read_text())
    sched = json.loads((out / "schedule.json").read_text())
    assert len(sched["epochs"]) == 4 and all(len(p) == 60 for p in sched["epochs"])
    oracle = json.loads((out / "pbt" / "oracle.json").read_text())["pbt"]
    for mid, m in oracle["members"].items():
        done = [h for h in m["history"] if h.get("status") == "COMPLETED"]
        assert [h["initial_epoch"] for h in done] == [0, 2], (mid, m["history"])
    assert summary["best_member"] is not None
