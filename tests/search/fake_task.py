"""A Task stand-in with the rolekd_tf.training.Task interface, pure NumPy, instant.

The "model" remembers which policy it was trained with at every epoch (``trained`` [E, 60]), so a
test can compare the policies a member *actually* trained with against the schedule rebuilt from
its lineage log. ``evaluate`` is a deterministic function of that history (more augmentation →
higher score) plus a per-model offset drawn at build time.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from rolekd_tf.fileio import atomic_path, atomic_write_json


class FakeModel:
    def __init__(self, epochs: int, offset: float):
        self.trained = np.full((epochs, 60), -1, np.int64)
        self.epoch = 0
        self.offset = float(offset)
        self.steps = 0


def _table_array(table):
    if table is None:
        raise AssertionError("PBTTuner must pass a policy table")
    if hasattr(table, "as_array"):
        return np.asarray(table.as_array())
    if hasattr(table, "variable"):
        return np.asarray(table.variable.numpy())
    return np.asarray(table.table)


class FakeTask:
    def __init__(self, epochs: int = 12, *, fit_sleep: float = 0.0, calls_log: str | None = None, seed: int = 0):
        self.total_epochs = epochs
        self.steps_per_epoch = 1
        self.fit_sleep = fit_sleep
        self.calls_log = calls_log
        self.seed = seed

    def with_seed(self, seed):
        t = FakeTask(self.total_epochs, fit_sleep=self.fit_sleep, calls_log=self.calls_log, seed=seed)
        return t

    def build(self):
        rng = np.random.default_rng(self.seed)
        return FakeModel(self.total_epochs, rng.uniform(0, 0.01))

    def fit(self, model, *, policy_table, initial_epoch, epochs, callbacks=()):
        assert model.epoch == initial_epoch, (model.epoch, initial_epoch)
        arr = _table_array(policy_table)
        self._log({"event": "fit_start", "e0": initial_epoch, "e1": epochs})
        loss = []
        for e in range(initial_epoch, epochs):
            if self.fit_sleep:
                time.sleep(self.fit_sleep)
            model.trained[e] = arr[e]
            model.epoch = e + 1
            model.steps += 1
            loss.append(1.0 / (e + 1))
        self._log({"event": "fit_end", "e0": initial_epoch, "e1": epochs})
        return {"loss": loss, "accuracy": [0.5] * len(loss)}

    def evaluate(self, model) -> float:
        done = model.trained[: model.epoch]
        return float(done[:, 0::2].mean() / 10.0 * 0.9 + model.offset) if len(done) else model.offset

    def save_state(self, model, path, *, epoch, extra=None):
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, trained=model.trained, epoch=model.epoch, offset=model.offset, steps=model.steps)
        atomic_write_json(path.with_suffix(".json"), {"epoch": int(epoch), **(extra or {})})

    def load_state(self, model, path):
        path = Path(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        d = np.load(path)
        model.trained = d["trained"].copy()
        model.epoch = int(d["epoch"])
        model.offset = float(d["offset"])
        model.steps = int(d["steps"])
        return meta

    def _log(self, rec):
        if self.calls_log:
            rec = {"pid": os.getpid(), "trial": os.environ.get("FAKE_TRIAL", ""), **rec}
            with open(self.calls_log, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
