"""(~30 s) Keras Tuner chief/worker mode with PBTOracle on loopback: one chief (gRPC oracle), 2 workers."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rolekd_tf.search import oracle as om
from tests.search.test_tuner import check_search

ROOT = Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chief_and_two_workers(tmp_path):
    out, calls = tmp_path / "s", tmp_path / "calls.jsonl"
    port = str(_free_port())
    base = dict(os.environ, PYTHONPATH=str(ROOT), KERASTUNER_ORACLE_IP="127.0.0.1",
                KERASTUNER_ORACLE_PORT=port)
    cmd = [sys.executable, "-m", "tests.search._fake_search", str(out), str(calls), "0.05"]
    procs = {tid: subprocess.Popen(cmd, cwd=ROOT, env=dict(base, KERASTUNER_TUNER_ID=tid),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tid in ("chief", "tuner0", "tuner1")}
    outs = {}
    try:
        for tid, p in procs.items():
            outs[tid] = p.communicate(timeout=300)[0]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tid, p in procs.items():
        assert p.returncode == 0, f"{tid}:\n{outs[tid][-3000:]}"
    assert "FINISHED True" in outs["chief"]
    # both workers trained segments
    for tid in ("tuner0", "tuner1"):
        assert outs[tid].count("val_accuracy") >= 1, outs[tid][-2000:]
    o = om.PBTOracle(population=4, ready_interval=3, epochs=12, seed=11)
    o._set_project_dir(str(out), "pbt")
    o.reload()
    check_search(out / "pbt", o)
    # synchronous generations: the decisions equal a single-process run's
    from rolekd_tf.search.tuner import PBTTuner
    from tests.search.fake_task import FakeTask

    ref = om.PBTOracle(population=4, ready_interval=3, epochs=12, seed=11)
    PBTTuner(ref, task_factory=lambda: FakeTask(12), directory=str(tmp_path / "ref"), project_name="pbt",
             log=False).search(verbose=0)
    assert ref.pbt_state["lineage"] == o.pbt_state["lineage"]
