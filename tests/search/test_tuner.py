"""PBTTuner with a fake Task (no TF training): end to end, lineage = what was trained,
checkpoint GC, kill -9 + resume, and RSS over trials with a real (tiny) Keras model."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.augment.policy import load_schedule
from rolekd_tf.search import lineage as lin
from rolekd_tf.search import oracle as om
from rolekd_tf.search.tuner import PBTTuner
from tests.search.fake_task import FakeModel, FakeTask

ROOT = Path(__file__).resolve().parents[2]


def trained_policies(project: Path, trial_id: str):
    return np.load(project / f"trial_{trial_id}" / "state.npz")["trained"]


def check_search(project: Path, oracle, epochs=12, ready_interval=3):
    st = oracle.pbt_state
    assert oracle.finished
    for mid, m in st["members"].items():
        assert m["epoch"] == epochs
        got = trained_policies(project, m["ckpt_trial"])
        assert (got >= 0).all(), "an epoch was never trained"
        want = lin.schedule_for_rows(m["log"], epochs).as_array().tolist()
        assert got.tolist() == want, f"member {mid}: trained policies != lineage schedule"
        if m["log"]:
            assert load_schedule(lin.log_path(project / "lineage", mid), epochs=epochs).as_array().tolist() == want
    # exactly one completed segment per (member, generation)
    keys = [(oracle.trials[t].hyperparameters.values[om.HP_MEMBER],
             oracle.trials[t].hyperparameters.values[om.HP_GENERATION])
            for t in oracle.end_order if oracle.trials[t].status == "COMPLETED"]
    assert len(keys) == len(set(keys)) == len(st["members"]) * (epochs // ready_interval)
    assert not list(project.rglob(".tmp-*"))


def test_fake_search_end_to_end(tmp_path):
    o = om.PBTOracle(population=4, ready_interval=3, epochs=12, seed=5)
    tuner = PBTTuner(o, task_factory=lambda: FakeTask(12), directory=str(tmp_path), project_name="pbt",
                     log=False)
    tuner.search(verbose=0)
    project = tmp_path / "pbt"
    check_search(project, o)
    assert o.pbt_state["lineage"], "no exploit happened"
    # checkpoint GC: only the members' latest checkpoints remain
    left = sorted(p.parent.name for p in project.glob("trial_*/state.npz"))
    assert left == sorted(f"trial_{m['ckpt_trial']}" for m in o.pbt_state["members"].values())
    seg = json.loads((project / f"trial_{o.end_order[-1]}" / "segment.json").read_text())
    assert {"train_seconds", "history", "policy", "val_accuracy"} <= set(seg)
    assert (project / "tb" / "member_0").is_dir()
    assert len(tuner.segment_times) == 16
    # a finished search re-run does nothing
    o2 = om.PBTOracle(population=4, ready_interval=3, epochs=12, seed=5)
    t2 = PBTTuner(o2, task_factory=lambda: FakeTask(12), directory=str(tmp_path), project_name="pbt",
                  log=False)
    t2.search(verbose=0)
    assert t2.segment_times == [] and o2.pbt_state["lineage"] == o.pbt_state["lineage"]


def test_kill_9_and_resume(tmp_path):
    out, calls = tmp_path / "s", tmp_path / "calls.jsonl"
    cmd = [sys.executable, "-m", "tests.search._fake_search", str(out), str(calls), "0.15"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # kill in the middle of a segment of generation 1-2
            n_end = sum(1 for ln in calls.read_text().splitlines() if '"fit_end"' in ln) if calls.exists() else 0
            n_start = sum(1 for ln in calls.read_text().splitlines() if '"fit_start"' in ln) if calls.exists() else 0
            if n_end >= 7 and n_start > n_end:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the search did not reach the kill point")
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    killed_at = sum(1 for ln in calls.read_text().splitlines() if '"fit_end"' in ln)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "FINISHED True" in r.stdout
    from rolekd_tf.search.oracle import PBTOracle

    o = PBTOracle(population=4, ready_interval=3, epochs=12, seed=11)
    o._set_project_dir(str(out), "pbt")
    o.reload()
    check_search(out / "pbt", o)
    # the reference: the same search never interrupted makes the same decisions
    ref = PBTOracle(population=4, ready_interval=3, epochs=12, seed=11)
    tuner = PBTTuner(ref, task_factory=lambda: FakeTask(12), directory=str(tmp_path / "ref"),
                     project_name="pbt", log=False)
    tuner.search(verbose=0)
    assert ref.pbt_state["lineage"] == o.pbt_state["lineage"]
    # segments: 16 booked; at most the one interrupted segment was trained twice
    ends = sum(1 for ln in calls.read_text().splitlines() if '"fit_end"' in ln)
    assert 16 <= ends <= 17, (killed_at, ends)
    for ck in (out / "pbt").glob("trial_*/state.npz"):
        np.load(ck)["trained"]  # every checkpoint on disk is complete


class TinyKerasTask(FakeTask):
    """Builds and trains a real (tiny) Keras model, to measure memory across trials."""

    def __init__(self, epochs=12):
        super().__init__(epochs)
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(256, 8, 8, 3)).astype("float32")
        self.y = rng.integers(0, 4, 256)

    def with_seed(self, seed):
        return self

    def build(self):
        import keras

        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(8, 3, activation="relu")(inp)
        h = keras.layers.GlobalAveragePooling2D()(h)
        out = keras.layers.Dense(4)(h)
        m = keras.Model(inp, out)
        m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        m.optimizer.build(m.trainable_variables)
        m._fake = FakeModel(self.total_epochs, 0.0)
        return m

    def fit(self, model, *, policy_table, initial_epoch, epochs, callbacks=()):
        super().fit(model._fake, policy_table=policy_table, initial_epoch=initial_epoch, epochs=epochs)
        return model.fit(self.x, self.y, batch_size=64, initial_epoch=initial_epoch, epochs=epochs,
                         verbose=0).history

    def evaluate(self, model):
        return float(model.evaluate(self.x, self.y, verbose=0, return_dict=True)["accuracy"])

    def save_state(self, model, path, *, epoch, extra=None):
        super().save_state(model._fake, path, epoch=epoch, extra=extra)
        np.savez(str(path) + ".w.npz", *[v.numpy() for v in model.weights + model.optimizer.variables])

    def load_state(self, model, path):
        meta = super().load_state(model._fake, path)
        d = np.load(str(path) + ".w.npz")
        for i, v in enumerate(model.weights + model.optimizer.variables):
            v.assign(d[f"arr_{i}"])
        return meta


def _rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("reuse", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_memory_flat_across_trials(tmp_path, reuse):
    """reuse=True (default): one compiled model per process, states swapped → flat RSS.
    reuse=False: clear_session() + rebuild every trial; measured ≈ +2 MB per trial on TF 2.21
    (retraced functions are not all released), so the bound there is per trial."""
    rss = []

    class Probe(PBTTuner):
        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            rss.append(_rss_mb())

    task = TinyKerasTask(12)
    o = om.PBTOracle(population=3, ready_interval=2, epochs=12, seed=0)
    Probe(o, task_factory=lambda: task, reuse_model=reuse, directory=str(tmp_path), project_name="pbt",
          log=False).search(verbose=0)
    assert len(rss) == 18
    warm = np.median(rss[4:7])
    growth = np.median(rss[-3:]) - warm
    print(f"reuse={reuse}: RSS after warm-up {warm:.0f} MB, growth over 12 more trials {growth:+.1f} MB")
    assert growth < (15 if reuse else 12 * 4), rss


class FlakyTask(FakeTask):
    """FakeTask whose segments starting at one of ``fail_epochs`` raise (a transient fault while
    ``flaky["on"]``), like a segment that crashes in a re-run after kill -9 (RELIABILITY.md O2)."""

    def __init__(self, epochs, flaky, fail_epochs=(0,)):
        super().__init__(epochs)
        self.flaky, self.fail_epochs = flaky, tuple(fail_epochs)

    def with_seed(self, seed):
        t = FlakyTask(self.total_epochs, self.flaky, self.fail_epochs)
        t.seed = seed
        return t

    def fit(self, model, *, policy_table, initial_epoch, epochs, callbacks=()):
        if self.flaky["on"] and initial_epoch in self.fail_epochs:
            raise RuntimeError(f"injected fault in the segment starting at epoch {initial_epoch}")
        return super().fit(model, policy_table=policy_table, initial_epoch=initial_epoch, epochs=epochs)


def _completed_segments(oracle):
    return sum(1 for m in oracle.pbt_state["members"].values() for h in m["history"]
               if h.get("status") == "COMPLETED")


@pytest.mark.parametrize("population,fail_epochs", [(2, (0,)), (4, (0,)), (2, (2,))])
def test_generation_where_every_segment_fails_stops_and_resume_retries_it(tmp_path, capsys, population,
                                                                         fail_epochs):
    """O2: when every member's segment of a generation failed, the search used to be declared
    *finished* (``all()`` over no surviving member is True): exit 0, the initial policy as
    "schedule", ``segments_completed: 0``. Now it stops unfinished with the first error, and
    re-running the same command retries that generation's segments."""
    flaky = {"on": True}

    def search():
        o = om.PBTOracle(population=population, ready_interval=2, epochs=4, seed=1)
        t = PBTTuner(o, task_factory=lambda: FlakyTask(4, flaky, fail_epochs), directory=str(tmp_path),
                     project_name="pbt", log=False)
        t.search(verbose=0)
        return o

    o = search()
    assert not o.finished, "a search whose members all failed must not count as finished"
    assert o.stalled and "injected fault" in o.stall_message()
    assert "FAILED" in capsys.readouterr().out  # each failed segment is reported, with its error
    flaky["on"] = False  # the fault is gone: re-running the same command completes the search
    o = search()
    assert o.finished and not o.stalled
    assert _completed_segments(o) == population * 2
    assert all(m["score"] is not None and m["epoch"] == 4 for m in o.pbt_state["members"].values())
    check_search(tmp_path / "pbt", o, epochs=4, ready_interval=2)


def test_reload_does_not_rerun_a_segment_that_was_already_booked(tmp_path):
    """Keras Tuner's end_trial saves oracle.json while the ended trial is still listed as ongoing
    (it is popped after the save; Tuner.save writes the state again). A kill between the two saves
    used to send the already booked trial back to the retry queue: its segment was trained again
    (overwriting a checkpoint members restore from) or failed on a collected checkpoint."""
    o = om.PBTOracle(population=2, ready_interval=2, epochs=4, seed=1)
    t = PBTTuner(o, task_factory=lambda: FakeTask(4), directory=str(tmp_path), project_name="pbt", log=False)
    trial = o.create_trial("tuner0")
    t.on_trial_begin(trial)
    t._try_run_and_update_trial(trial)
    orig_save, saves = o.save, []

    def save_then_die():  # the first save inside end_trial lands, then the process "dies"
        orig_save()
        saves.append(1)
        raise KeyboardInterrupt

    o.save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        o.end_trial(trial)
    o.save = orig_save
    (tmp_path / "pbt" / "tuner0.json").write_text("{}")  # as left by an earlier trial's Tuner.save
    o2 = om.PBTOracle(population=2, ready_interval=2, epochs=4, seed=1)
    t2 = PBTTuner(o2, task_factory=lambda: FakeTask(4), directory=str(tmp_path), project_name="pbt", log=False)
    assert trial.trial_id in o2.pbt_state["recorded"]
    assert o2._retry_queue == [], "a booked segment must not be trained again"
    t2.search(verbose=0)
    assert o2.finished and _completed_segments(o2) == 4
    assert len(t2.segment_times) == 3
