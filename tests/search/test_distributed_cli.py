"""(slow, ~3 min) search.py itself in Keras Tuner chief/worker mode: a chief and 2 workers on
loopback train a tiny real model (ResNet-8 on the embedded digits) and produce one consistent search."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETS = ["--set", "model.name=resnet8", "--set", "data.train_size=128", "--set", "data.val_size=64",
        "--set", "data.holdout_size=0", "--set", "train.batch_size=32", "--set", "search.population=4",
        "--set", "search.epochs=4", "--set", "search.ready_interval=2", "--set", "search.seed=3"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_search_py_chief_and_two_workers(tmp_path):
    out = tmp_path / "search"
    base = dict(os.environ, PYTHONPATH=str(ROOT), KERASTUNER_ORACLE_IP="127.0.0.1",
                KERASTUNER_ORACLE_PORT=str(_free_port()))
    cmd = [sys.executable, "search.py", "--role", "teacher", "--config", "configs/quickstart.yaml",
           *SETS, "--out", str(out)]
    procs = {}
    for tid in ("chief", "tuner0", "tuner1"):
        procs[tid] = subprocess.Popen(cmd, cwd=ROOT, env=dict(base, KERASTUNER_TUNER_ID=tid),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outs = {}
    try:
        for tid, p in procs.items():
            outs[tid] = p.communicate(timeout=900)[0]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tid, p in procs.items():
        assert p.returncode == 0, f"{tid}:\n{outs[tid][-3000:]}"
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
