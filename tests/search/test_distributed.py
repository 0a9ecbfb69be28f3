"""(~20 s idle, ~70 s at load 6 on 2 cores) Keras Tuner chief/worker mode with PBTOracle on loopback: one chief (gRPC oracle), 2 workers."""
import sys

import pytest

from rolekd_tf.search import oracle as om
from tests.search._chief_workers import run_chief_and_workers
from tests.search.test_tuner import check_search



def test_chief_and_two_workers(tmp_path):
    out, calls = tmp_path / "s", tmp_path / "calls.jsonl"
    cmd = [sys.executable, "-m", "tests.search._fake_search", str(out), str(calls), "0.05"]
    outs = run_chief_and_workers(cmd, timeout=900)  # bounds a hang only
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
