"""A search "killed" at every file write it makes, then resumed, ends like an uninterrupted one.

The kill is simulated in process: ``atomic_path`` (through which the oracle, the tuner and the task
write every file) raises a ``BaseException`` at its k-th use, either before the rename (the
``.tmp-*`` twin is complete, the target is not replaced: the state a kill -9 leaves while a file is
written) or right after it (a kill between two writes). Nothing else runs after the exception that
could write a file (Keras Tuner only catches ``Exception``), so the project directory is exactly
what a kill at that point leaves. A fresh oracle + tuner then re-runs the search in the same
directory, as re-running ``search.py`` does.

For every one of the ~100 kill points: the resumed search finishes with one COMPLETED segment per
(member, generation), the same lineage, decisions and per-member trial ids as the uninterrupted
search, and at most one segment is trained twice (the interrupted one)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

import rolekd_tf.fileio as fileio
import tests.search.fake_task as fake_task
from rolekd_tf.search import oracle as om
from rolekd_tf.search.tuner import PBTTuner
from tests.search.fake_task import FakeTask

POP, R, E = 2, 2, 4


class _Killed(BaseException):
    pass


def _search(d, counter):
    o = om.PBTOracle(population=POP, ready_interval=R, epochs=E, seed=3)

    class Task(FakeTask):
        def with_seed(self, seed):
            t = Task(self.total_epochs)
            t.seed = seed
            return t

        def fit(self, model, **kw):
            counter.append(1)
            return super().fit(model, **kw)

    t = PBTTuner(o, task_factory=lambda: Task(E), directory=str(d), project_name="pbt", log=False)
    t.search(verbose=0)
    return o


def _summary(o):
    st = o.pbt_state
    return {
        "lineage": st["lineage"],
        "decisions": st["decisions"],
        "trial ids": {k: [(h["trial_id"], h["status"]) for h in m["history"]] for k, m in st["members"].items()},
        "completed": sum(h["status"] == "COMPLETED" for m in st["members"].values() for h in m["history"]),
    }


@pytest.mark.slow
def test_kill_at_every_write_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    orig = fileio.atomic_path
    plan = {"n": 0, "at": None, "when": None, "last": None}

    @contextlib.contextmanager
    def killable(path, *, is_dir=False):
        with orig(path, is_dir=is_dir) as tmp:
            yield tmp
            plan["n"] += 1
            plan["last"] = path
            if plan["n"] == plan["at"] and plan["when"] == "before rename":
                raise _Killed()
        if plan["n"] == plan["at"] and plan["when"] == "after rename":
            raise _Killed()

    monkeypatch.setattr(fileio, "atomic_path", killable)
    monkeypatch.setattr(fake_task, "atomic_path", killable)

    ref = _summary(_search(tmp_path / "ref", []))
    n_writes = plan["n"]
    assert ref["completed"] == POP * E // R and ref["lineage"] and n_writes > 30
    bad = []
    for k in range(1, n_writes + 1):
        for when in ("before rename", "after rename"):
            d = tmp_path / f"k{k:03d}-{when.split()[0]}"
            trained: list = []
            plan.update(n=0, at=k, when=when)
            with pytest.raises(_Killed):
                _search(d, trained)
            what = Path(plan["last"]).relative_to(d) if plan["last"] else None
            plan.update(at=None)
            got = _summary(_search(d, trained))
            if got != ref or len(trained) > POP * E // R + 1:
                bad.append((k, when, str(what), len(trained),
                            {key: got[key] for key in got if got[key] != ref[key]}))
    assert not bad, f"{len(bad)} of {2 * n_writes} kill points resume differently: {bad[:5]}"
