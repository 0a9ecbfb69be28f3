"""kill -9 a PBT search (search.py, roles teacher and student) at several points; re-running the
same command completes the search; schedule.json / the lineage log / summary.json are valid and
agree, and every member reached the last epoch exactly once per segment."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability._util import check_ok, cli_env, kill9, popen_tool, read_json, run_tool, wait_for

CONFIG = """\
name: tiny
data: {dataset: "embedded:digits", train_size: 256, val_size: 128}
model: {name: resnet8}
train: {epochs: 4, batch_size: 32}
augment: {cutout: 0}
search: {population: 2, ready_interval: 2, epochs: 4}
"""
EPOCHS = 4

#: Failing checks in rolekd_tf/search (owned by the search engineer; not fixed here). Remove an
#: entry once fixed — the check then runs. See RELIABILITY.md "Open findings".
KNOWN_BUGS: dict = {}


def _segments_done(out: Path) -> int:
    return len(list((out / "pbt").glob("trial_*/segment.json")))


def _tmp_in(out: Path, suffix: str) -> bool:
    return any(p.name.endswith(suffix) for p in out.rglob(".tmp-*"))


# name → (role, slowed file regex or None, predicate(out) → kill now)
SCENARIOS = {
    "teacher_during_first_segment": ("teacher", None, lambda o: any((o / "pbt").glob("trial_*"))),
    "teacher_during_segment_checkpoint_write": ("teacher", "^state\\.npz$", lambda o: _tmp_in(o / "pbt", "state.npz")),
    "teacher_during_oracle_write_after_a_segment": ("teacher", "^oracle\\.json$",
                                                    lambda o: _segments_done(o) >= 1 and _tmp_in(o / "pbt", "oracle.json")),
    "teacher_during_final_schedule_write": ("teacher", "^schedule\\.json$", lambda o: _tmp_in(o, "schedule.json")),
    "student_mid_search": ("student", None, lambda o: _segments_done(o) >= 3),
}


def _scenario(name: str, base: Path, teacher: Path) -> dict:
    role, slow, pred = SCENARIOS[name]
    d = base / name
    d.mkdir()
    (d / "c.yaml").write_text(CONFIG)
    out = d / "srch"
    args = ["--role", role, "--config", "c.yaml", "--out", "srch", "--quiet"]
    if role == "student":
        args += ["--teacher", teacher, "--set", "model.w_bits=2", "--set", "model.a_bits=2"]
    env = cli_env(ROLEKD_TEST_SLOW_WRITE=slow or "(?!)", ROLEKD_TEST_SLOW_SECONDS=4)
    p = popen_tool("shim-search", args, cwd=d, env=env, log=d / "killed.log")
    try:
        hit = wait_for(lambda: pred(out), p, timeout=1200, poll=0.005)
        done_before = _segments_done(out)
    finally:
        kill9(p)
    r = run_tool("search", args, cwd=d, timeout=1800)
    return {"hit": hit, "done_before": done_before, "rc": r.returncode, "stdout": r.stdout,
            "stderr": r.stderr[-3000:], "out": str(out), "log": (d / "killed.log").read_text()[-2000:]}


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    base = tmp_path_factory.mktemp("search_crash")
    teacher = base / "teacher"
    check_ok(run_tool("train", ["--set", "data.train_size=256", "--set", "data.val_size=128",
                                "--set", "train.epochs=1", "--set", "train.batch_size=32",
                                "--set", "model.name=resnet8", "--quiet", "--out", teacher], cwd=base))
    with ThreadPoolExecutor(len(SCENARIOS)) as pool:
        return dict(zip(SCENARIOS, pool.map(lambda n: _scenario(n, base, teacher), SCENARIOS)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_search_kill9_then_rerun_completes(searched, name):
    from rolekd_tf.augment.policy import load_schedule

    info = searched[name]
    assert info["hit"], f"{name}: kill point never reached; log: {info['log']}"
    assert info["rc"] == 0, f"re-run failed rc={info['rc']}:\n{info['stdout'][-2000:]}\n{info['stderr']}"
    out = Path(info["out"])
    sched = load_schedule(out / "schedule.json")
    assert sched.epochs == EPOCHS
    s = read_json(out / "summary.json")
    if "segments_completed" not in KNOWN_BUGS:
        o = read_json(out / "pbt" / "oracle.json")["pbt"]
        hist = {k: [(h.get("status"), h.get("initial_epoch"), h.get("epochs")) for h in m["history"]]
                for k, m in o["members"].items()}
        assert s["segments_completed"] == 2 * EPOCHS // 2, (  # population × segments per member
            f"summary {s}; member histories {hist}; killed-run log: {info['log']}; re-run: {info['stdout'][-1500:]}")
    assert len(s["final_scores"]) == 2 and all(v is not None for v in s["final_scores"].values())
    if s["best_lineage_log"]:
        again = load_schedule(s["best_lineage_log"], epochs=EPOCHS)
        assert again.as_array().tolist() == sched.as_array().tolist()
    if "stale_tmp" not in KNOWN_BUGS:
        assert not list(out.rglob(".tmp-*")), sorted(map(str, out.rglob(".tmp-*")))


@pytest.mark.slow
def test_rerun_whose_segments_all_fail_is_an_error_not_a_finished_search(tmp_path):
    """O2, reproduced deterministically: kill -9 a teacher search during its first segment, then
    re-run it while every generation-0 segment raises (the fault is injected by the test shim;
    under load the original one was never identified). Before the fix that re-run exited 0 with
    the initial policy as "schedule" and ``segments_completed: 0`` (with population 2, Keras
    Tuner's 3-consecutive-failures stop is never reached). Now it exits 2 with one ``error:``
    line naming the failure and writes no result; re-running without the fault completes (4
    segments, every member scored)."""
    from rolekd_tf.augment.policy import load_schedule

    (tmp_path / "c.yaml").write_text(CONFIG)
    out = tmp_path / "srch"
    args = ["--role", "teacher", "--config", "c.yaml", "--out", "srch"]
    log = tmp_path / "killed.log"
    p = popen_tool("shim-search", args, cwd=tmp_path, env=cli_env(), log=log)
    try:
        hit = wait_for(lambda: "gen 0 · member 0 ·" in log.read_text(encoding="utf-8"), p, timeout=1200, poll=0.05)
    finally:
        kill9(p)
    assert hit, log.read_text()[-3000:]

    r = run_tool("shim-search", args, cwd=tmp_path, env=cli_env(ROLEKD_TEST_FAIL_FIT_EPOCH=0), timeout=1800)
    detail = f"rc={r.returncode}\n{r.stdout[-2500:]}\n{r.stderr[-2500:]}"
    if (out / "summary.json").exists():
        detail += f"\nsummary.json: {(out / 'summary.json').read_text()}"
    assert r.returncode == 2, detail
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), detail
    assert "every member's segment of generation 0 failed" in lines[0] and "injected fault" in lines[0], detail
    assert r.stdout.count("FAILED: RuntimeError: injected fault") == 2, detail
    assert not (out / "summary.json").exists() and not (out / "schedule.json").exists(), detail

    r = check_ok(run_tool("search", args + ["--quiet"], cwd=tmp_path, timeout=1800))
    s = read_json(out / "summary.json")
    assert s["segments_completed"] == 4 and all(v is not None for v in s["final_scores"].values()), s
    assert s["segments_this_run"] == 4, s  # the 2 failed segments retried + generation 1
    assert load_schedule(out / "schedule.json").epochs == EPOCHS
    assert not list(out.rglob(".tmp-*"))
