"""kill -9 a training run at different points; re-running the same command completes it, the
final artefacts are valid and load, and the metrics history has no gaps or duplicates.

Kill points (``SCENARIOS``): right after start (TensorFlow still importing), during an epoch,
while ``checkpoints/state.npz`` is being written (its ``.tmp-*`` twin exists), while its
metadata ``state.json`` is being written, while ``metrics.json`` is being written (between
epochs), and while the final ``model.keras`` is being written. A test shim
(``_slow_writes.py``) holds the chosen atomic write open for a few seconds between "temporary
file complete" and "rename", so the kill lands inside the write every time.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.reliability._util import (
    check_ok, cli_env, kill9, popen_tool, read_json, run_tool, wait_for,
)

EPOCHS = 4
ARGS = ["--set", "data.train_size=256", "--set", "data.val_size=128", "--set", "data.holdout_size=64",
        "--set", f"train.epochs={EPOCHS}", "--set", "train.batch_size=32", "--set", "model.name=resnet8",
        "--set", "augment.cutout=0", "--quiet"]


def _epoch(run: Path) -> int:
    s = run / "checkpoints" / "state.json"
    return read_json(s)["epoch"] if s.exists() else 0


def _tmp_of(folder: Path, name: str) -> bool:
    return folder.is_dir() and any(p.name.endswith(name) for p in folder.glob(".tmp-*"))


# name → (file name slowed by the shim or None, predicate(run) → kill now)
SCENARIOS = {
    "right_after_start": (None, None),
    "during_epoch": (None, lambda run: _epoch(run) >= 1),
    "checkpoint_npz_write": ("^state\\.npz$", lambda run: _epoch(run) >= 1 and _tmp_of(run / "checkpoints", "state.npz")),
    "checkpoint_meta_write": ("^state\\.json$", lambda run: _epoch(run) >= 1 and _tmp_of(run / "checkpoints", "state.json")),
    "between_epochs_metrics_write": ("^metrics\\.json$", lambda run: _epoch(run) >= 2 and _tmp_of(run, "metrics.json")),
    "final_model_save": ("^model\\.keras$", lambda run: _tmp_of(run, "model.keras")),
}


def _scenario(name: str, base: Path) -> dict:
    slow, pred = SCENARIOS[name]
    run = base / name / "run"
    run.parent.mkdir(parents=True)
    args = [*ARGS, "--out", run]
    env = cli_env(ROLEKD_TEST_SLOW_WRITE=slow or "(?!)", ROLEKD_TEST_SLOW_SECONDS=4)
    p = popen_tool("shim-train", args, cwd=run.parent, env=env, log=run.parent / "killed.log")
    info: dict = {"name": name}
    try:
        if pred is None:
            time.sleep(1.5)
            hit = p.poll() is None
        else:
            hit = wait_for(lambda: pred(run), p, timeout=900)
        if name == "during_epoch" and hit:
            time.sleep(0.7)  # well inside the next epoch's steps
        info["pre_kill_epoch"] = _epoch(run)
    finally:
        kill9(p)
    info["hit"] = hit
    # what a kill leaves behind: every visible checkpoint must be loadable on its own
    st = run / "checkpoints" / "state.npz"
    if st.exists():
        with np.load(st) as z:
            info["npz_arrays"] = len([k for k in z.files if k.startswith("v")])
            info["npz_meta"] = json.loads(str(z["meta"])) if "meta" in z.files else None
        info["json_meta"] = read_json(run / "checkpoints" / "state.json")
    info["leftover_tmp"] = sorted(str(x.relative_to(run)) for x in run.rglob(".tmp-*")) if run.exists() else []
    r = run_tool("train", args, cwd=run.parent)
    info.update(rc=r.returncode, stdout=r.stdout, stderr=r.stderr[-3000:], run=str(run))
    return info


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    with ThreadPoolExecutor(3) as pool:
        return dict(zip(SCENARIOS, pool.map(lambda n: _scenario(n, base), SCENARIOS)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill9_then_rerun_completes_with_valid_artefacts(crashed, name):
    import keras

    import rolekd_tf  # noqa: F401  (registers layers)

    info = crashed[name]
    assert info["hit"], f"{name}: the kill point was never reached"
    check_ok(type("P", (), {"returncode": info["rc"], "args": name, "stdout": info["stdout"],
                            "stderr": info["stderr"]})())
    run = Path(info["run"])
    m = read_json(run / "metrics.json")
    assert m["finished"] is True
    h = m["history"]
    assert h["epoch"] == list(range(EPOCHS)), f"gaps/duplicates in the history: {h['epoch']}"
    assert all(len(v) == EPOCHS for v in h.values()), {k: len(v) for k, v in h.items()}
    assert all(np.isfinite(v).all() for v in h.values())
    assert read_json(run / "checkpoints" / "state.json")["epoch"] == EPOCHS
    model = keras.saving.load_model(str(run / "model.keras"), compile=False)
    assert int(model.output.shape[-1]) == 10
    assert not list(run.rglob(".tmp-*")), "temporary files left after the re-run"
    if info.get("pre_kill_epoch"):
        assert f"from epoch {info['pre_kill_epoch']}/{EPOCHS}" in info["stdout"] or name == "checkpoint_meta_write"


@pytest.mark.slow
def test_kill_during_checkpoint_write_leaves_previous_checkpoint_loadable(crashed):
    """The atomic writers as used by training: a kill inside the state.npz write leaves the
    previous, complete checkpoint (npz + json agree), and the re-run resumes from exactly it."""
    info = crashed["checkpoint_npz_write"]
    assert info["hit"]
    meta = info["json_meta"]
    assert meta["epoch"] == info["pre_kill_epoch"] >= 1
    assert info["npz_arrays"] == meta["num_variables"]
    assert f"resuming {info['run']} from epoch {meta['epoch']}/{EPOCHS}" in info["stdout"]
    assert any(x.endswith("state.npz") for x in info["leftover_tmp"])  # the write really was cut


@pytest.mark.slow
def test_kill_between_npz_and_json_resumes_consistently(crashed):
    """Killed after the new weights were renamed into place but before state.json: the resumed
    epoch must be the epoch those weights belong to (npz and metadata never disagree)."""
    info = crashed["checkpoint_meta_write"]
    assert info["hit"]
    npz_epoch = info["npz_meta"]["epoch"] if info["npz_meta"] else None
    assert npz_epoch is not None, "state.npz carries no metadata: weights and epoch can disagree"
    assert f"from epoch {npz_epoch}/{EPOCHS}" in info["stdout"]
