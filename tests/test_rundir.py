"""Run/search directory lifecycle (rolekd_tf/rundir.py): a refused command changes nothing,
names and --out stay contained, a directory in use is locked, kill -9 leaves a lock that is
taken over. Fast cases run in-process; CLI cases use tiny ResNet-8 runs on embedded:digits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rolekd_tf import rundir
from rolekd_tf.errors import CheckpointError, ConfigError
from tests.reliability._util import (
    TINY, check_ok, cli_env, error_problems, kill9, popen_tool, run_tool, snapshot, snapshot_diff, wait_for,
)

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ names, --out
@pytest.mark.parametrize("name", [".", "..", "a/b", "../x", "", " a", "a\\b", "a\0b"])
def test_name_that_is_not_one_path_component_is_refused(name):
    from rolekd_tf.config import config_from_dict

    with pytest.raises(ConfigError, match="single path component"):
        rundir.check_name(name)
    with pytest.raises(ConfigError, match="name="):
        config_from_dict({"name": name})


def test_plain_names_are_accepted():
    from rolekd_tf.config import load_config

    for n in ("run", "cifar10-w2a2", "a.b", "x_1"):
        assert load_config(None, [f"name={n}"]).name == n


def test_out_never_root_cwd_or_an_ancestor_of_an_input(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "runs" / "teacher").mkdir(parents=True)
    (work / "sched.json").write_text("{}")
    monkeypatch.chdir(work)
    for out, needle in [("/", "root"), (".", "working directory"), ("..", "working directory"),
                        (str(work), "working directory")]:
        with pytest.raises(ConfigError, match=needle):
            rundir.check_out(out, {})
    inputs = {"teacher run": "runs/teacher", "schedule file": "sched.json", "dataset": None}
    with pytest.raises(ConfigError, match="teacher run"):
        rundir.check_out("runs/teacher", inputs)
    with pytest.raises(ConfigError, match="teacher run"):
        rundir.check_out("runs", inputs)  # an ancestor: --overwrite would delete the teacher
    assert rundir.check_out("runs/student", inputs) == (work / "runs" / "student").resolve()
    assert rundir.check_out(tmp_path / "elsewhere" / "r", inputs).name == "r"  # anywhere else is fine


# ------------------------------------------------------------------------------ ownership
def test_inspect_refuses_foreign_folders_and_the_other_kind(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    for ow in (False, True):
        with pytest.raises(CheckpointError, match="not a run directory"):
            rundir.inspect(foreign, "run", overwrite=ow)
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        rundir.inspect(f, "run", overwrite=True)
    assert rundir.inspect(tmp_path / "new", "run", overwrite=True) == "absent"
    (tmp_path / "empty").mkdir()
    assert rundir.inspect(tmp_path / "empty", "run", overwrite=False) == "empty"
    legacy = tmp_path / "legacy"  # written before markers existed: config.yaml + run.json
    legacy.mkdir()
    (legacy / "config.yaml").write_text("name: x\n")
    (legacy / "run.json").write_text("{}")
    assert rundir.inspect(legacy, "run", overwrite=True) == "ours"
    with pytest.raises(CheckpointError, match="not a search directory"):
        rundir.inspect(legacy, "search", overwrite=True)
    with rundir.claim(tmp_path / "s", "search", "absent", overwrite=False):
        pass
    with pytest.raises(CheckpointError, match="is a search directory, not a run directory"):
        rundir.inspect(tmp_path / "s", "run", overwrite=True)


def _fake_run(d: Path, kind="run") -> Path:
    d.mkdir(parents=True)
    (d / rundir.MARKER).write_text(json.dumps({"kind": kind, "pid": 1, "host": "h", "created": "t"}))
    (d / "config.yaml").write_text("name: old\n")
    (d / "model.keras").write_bytes(b"old weights")
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "state.npz").write_bytes(b"old state")
    return d


def test_overwrite_moves_aside_then_deletes_only_after_started(tmp_path):
    out = _fake_run(tmp_path / "r")
    stale = _fake_run(tmp_path / "r.old-4242")  # left by a kill -9 inside an earlier --overwrite
    foreign = tmp_path / "r.old-notours"
    foreign.mkdir()
    with rundir.claim(out, "run", "ours", overwrite=True) as c:
        assert c.fresh and c.aside is not None and c.aside.name == f"r.old-{os.getpid()}"
        assert (c.aside / "model.keras").read_bytes() == b"old weights"
        assert sorted(p.name for p in out.iterdir()) == [rundir.MARKER, rundir.LOCK]
        c.started()
        assert not (tmp_path / f"r.old-{os.getpid()}").exists()
    assert not stale.exists()  # an aside of the same directory, ours, unlocked: deleted too
    assert foreign.exists()


def test_overwrite_that_fails_before_starting_restores_the_old_directory(tmp_path):
    out = _fake_run(tmp_path / "r")
    before = snapshot(out)
    with pytest.raises(RuntimeError, match="disk full"):
        with rundir.claim(out, "run", "ours", overwrite=True):
            (out / "config.yaml").write_text("name: new\n")
            raise RuntimeError("disk full")
    after = snapshot(out)
    # same files and bytes (the lock file is ours; the marker and the rest are the old ones)
    assert snapshot_diff({k: v for k, v in before.items()}, {k: v for k, v in after.items()
                                                              if not k.endswith(rundir.LOCK)}) == []
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


# ------------------------------------------------------------------------------ locks
HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from rolekd_tf import rundir
state = rundir.inspect({d!r}, {kind!r}, overwrite=False)
with rundir.claim({d!r}, {kind!r}, state, overwrite=False):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(d: Path, kind: str) -> subprocess.Popen:
    """A separate process that locks ``d`` (as train.py / search.py would) until killed."""
    p = subprocess.Popen([PY, "-c", HOLDER.format(root=str(ROOT), d=str(d), kind=kind)], env=cli_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    line = p.stdout.readline()
    assert line.strip() == "held", line + p.stdout.read() if p.poll() is not None else line
    return p


def test_lock_names_the_holder_and_is_taken_over_after_kill9(tmp_path):
    d = tmp_path / "r"
    p = _hold(d, "run")
    try:
        h = rundir.lock_holder(d)
        assert h["pid"] == p.pid and h["host"]
        with pytest.raises(rundir.LockedError, match=f"pid {p.pid} on host"):
            rundir.inspect(d, "run", overwrite=False)
        with pytest.raises(rundir.LockedError, match=f"pid {p.pid}"):
            rundir.DirLock(d, "run", "test").acquire()
    finally:
        kill9(p)
    assert rundir.lock_holder(d) is None  # the kernel dropped the flock with the process
    assert json.loads((d / rundir.LOCK).read_text())["pid"] == p.pid  # the stale text is still there
    lk = rundir.DirLock(d, "run", "test").acquire()
    try:
        assert lk.took_over["pid"] == p.pid
        assert json.loads((d / rundir.LOCK).read_text())["pid"] == os.getpid()
    finally:
        lk.release()


@pytest.mark.parametrize("tool,kind,args", [
    ("train", "run", [*TINY]),
    ("search", "search", ["--role", "teacher", "--config", ROOT / "configs" / "quickstart.yaml", *TINY, "--set", "search.population=2",
                          "--set", "search.epochs=1", "--set", "search.ready_interval=1"]),
])
def test_cli_refuses_a_locked_directory_then_takes_over_after_kill9(tmp_path, tool, kind, args):
    """One fast lock test per CLI: a live holder → one-line refusal naming it; the holder killed
    with -9 → the same command takes the stale lock over and runs to the end."""
    d = tmp_path / "out"
    p = _hold(d, kind)
    try:
        r = run_tool(tool, [*args, "--out", d], cwd=tmp_path)
        assert not error_problems(r, f"pid {p.pid} on host"), r.stderr
        assert r.returncode == 2
        assert sorted(x.name for x in d.iterdir()) == [rundir.MARKER, rundir.LOCK]
    finally:
        kill9(p)
    r = check_ok(run_tool(tool, [*args, "--out", d], cwd=tmp_path))
    assert f"left by pid {p.pid}" in r.stdout
    if tool == "train":
        assert json.loads((d / "metrics.json").read_text())["finished"] is True
    else:
        assert json.loads((d / "summary.json").read_text())["best_member"] is not None


# ------------------------------------------------------------------------------ overwrite via the CLI
def _finished_teacher(base: Path) -> Path:
    t = base / "teacher"
    check_ok(run_tool("train", [*TINY, "--out", t], cwd=base))
    return t


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("rundir")
    return _finished_teacher(base)


def _cases(t: Path, base: Path):
    (base / "bad_sched.json").write_bytes(b'{"format": "rolekd-schedule/1", "epochs": [[1, 2')
    return {
        "unknown_model": ([*TINY, "--set", "model.name=resnet7", "--out", t], "resnet7"),
        "oversized_batch": ([*TINY, "--set", "train.batch_size=4096", "--out", t], "batch_size"),
        "oversized_split": ([*TINY, "--set", "data.train_size=99999", "--out", t], "train_size"),
        "unreadable_schedule": ([*TINY, "--schedule", base / "bad_sched.json", "--out", t], "bad_sched.json"),
        "teacher_is_out": ([*TINY, "--kd", "ii", "--teacher", t, "--out", t], "teacher run"),
        "init_is_out": ([*TINY, "--init", t, "--out", t], "--init run"),
    }


@pytest.mark.parametrize("case", ["unknown_model", "oversized_batch", "oversized_split", "unreadable_schedule",
                                  "teacher_is_out", "init_is_out"])
def test_overwrite_with_a_refused_input_leaves_every_byte_in_place(finished, tmp_path, case):
    import shutil

    base = tmp_path  # each case gets its own copy (mtimes kept): no case sees another's damage
    t = base / "teacher"
    shutil.copytree(finished, t)
    args, needle = _cases(t, base)[case]
    before = snapshot(base, exclude=[base / "bad_sched.json"])
    r = run_tool("train", [*args, "--overwrite"], cwd=base)
    assert not error_problems(r, needle), r.stderr
    assert r.returncode == 2, r.stderr
    after = snapshot(base, exclude=[base / "bad_sched.json"])
    assert snapshot_diff(before, after) == []  # bytes, sizes and mtimes of the finished run
    assert not list(base.glob("teacher.old-*"))


def test_overwrite_of_a_folder_that_was_never_a_run_dir_is_refused(tmp_path):
    d = tmp_path / "mydata"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    (d / "config.yaml").write_text("name: not-from-train.py\n")  # a config alone is not a run dir
    before = snapshot(tmp_path)
    r = run_tool("train", [*TINY, "--out", d, "--overwrite"], cwd=tmp_path)
    assert not error_problems(r, "not a run directory"), r.stderr
    assert r.returncode == 2
    assert snapshot_diff(before, snapshot(tmp_path)) == []


def test_overwrite_of_a_run_dir_replaces_it_and_leaves_no_aside(finished, tmp_path):
    import shutil

    t = tmp_path / "copy"
    shutil.copytree(finished, t)
    os.remove(t / rundir.MARKER)  # a run written before markers: config.yaml + run.json are ours
    old = (t / "model.keras").read_bytes()
    r = check_ok(run_tool("train", [*TINY, "--set", "seed=7", "--out", t, "--overwrite"], cwd=tmp_path))
    assert "already finished" not in r.stdout
    assert (t / "model.keras").read_bytes() != old
    assert "seed: 7" in (t / "config.yaml").read_text()
    assert json.loads((t / rundir.MARKER).read_text())["kind"] == "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


# ------------------------------------------------------------------------------ concurrency
def test_second_train_on_a_running_directory_is_refused_and_the_first_finishes(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "--set", "train.epochs=2", "--out", run]
    # the first run's final model.keras write is held open for a while (test shim), so the second
    # command certainly meets the first one still running
    env = cli_env(ROLEKD_TEST_SLOW_WRITE="^model\\.keras$", ROLEKD_TEST_SLOW_SECONDS=25)
    first = popen_tool("shim-train", args, cwd=tmp_path, env=env, log=tmp_path / "first.log")
    try:
        assert wait_for(lambda: json.loads((run / rundir.LOCK).read_text())["pid"], first, timeout=600)
        holder = json.loads((run / rundir.LOCK).read_text())["pid"]
        second = run_tool("train", [*TINY, "--set", "train.epochs=2", "--set", "seed=5", "--out", run],
                          cwd=tmp_path)
        third = run_tool("train", [*args, "--overwrite"], cwd=tmp_path)
        rc = first.wait(timeout=600)
    finally:
        kill9(first)
    for r in (second, third):
        assert not error_problems(r, f"pid {holder} on host"), r.stderr
        assert r.returncode == 2
    assert rc == 0, (tmp_path / "first.log").read_text()[-3000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["finished"] and len(m["history"]["epoch"]) == 2
    assert "seed: 0" in (run / "config.yaml").read_text()  # the first run's config, not the second's
    r = check_ok(run_tool("train", args, cwd=tmp_path))
    assert "already finished" in r.stdout


def test_export_is_refused_while_the_run_directory_is_locked(finished):
    p = _hold(finished, "run")
    try:
        r = run_tool("export", [finished, "--formats", "keras"], cwd=finished.parent)
    finally:
        kill9(p)
    assert not error_problems(r, f"pid {p.pid}"), r.stderr
    assert not (finished / "export").exists()


@pytest.mark.slow
def test_kill9_while_training_then_rerun_takes_the_lock_over_and_resumes(tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "--set", "train.epochs=3", "--out", run]
    p = popen_tool("train", args, cwd=tmp_path, log=tmp_path / "killed.log")
    try:
        state = run / "checkpoints" / "state.json"
        assert wait_for(lambda: json.loads(state.read_text())["epoch"] >= 1, p, timeout=600)
    finally:
        kill9(p)
    assert json.loads((run / rundir.LOCK).read_text())["pid"] == p.pid  # stale text, no flock
    r = check_ok(run_tool("train", args, cwd=tmp_path))
    assert f"left by pid {p.pid}" in r.stdout
    assert "resuming" in r.stdout and "from epoch" in r.stdout
    assert json.loads((run / "metrics.json").read_text())["history"]["epoch"] == [0, 1, 2]


# ------------------------------------------------------------------------------ input files
def test_config_that_is_not_utf8_is_a_config_error(tmp_path):
    """(config.read_yaml; kept here with the other input-safety cases.) Was UnicodeDecodeError →
    'internal error', exit 1."""
    from rolekd_tf.config import load_config

    c = tmp_path / "c.yaml"
    c.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text .byte 9."):
        load_config(c)
