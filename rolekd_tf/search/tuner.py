"""PBTTuner: runs one PBT segment per Keras Tuner trial (see :mod:`rolekd_tf.search.oracle`).

``run_trial``: (re)build or reuse the compiled model, restore the member (or its exploit source)
from ``trial_<restore_from>/state.npz`` with ``Task.load_state``, write the member's policy into
the :class:`~rolekd_tf.augment.pipeline.PolicyTable` rows, train epochs
``[pbt/initial_epoch, pbt/epochs)`` with ``Task.fit``, save ``trial_<id>/state.npz`` atomically
(``Task.save_state``), evaluate on the validation split and return the objective plus timings.

Memory: a member without a checkpoint (generation 0) gets a fresh model after
``keras.backend.clear_session()``; later segments reuse the one compiled model of this process and
only swap weights + optimizer state (``load_state`` assigns into the existing variables). So no
graph is retraced and nothing accumulates across trials (``reuse_model=False`` rebuilds after
``clear_session()`` every trial instead; both are measured in tests/search/test_tuner.py).
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import keras_tuner
import numpy as np

from rolekd_tf.augment.policy import POLICY_LEN
from rolekd_tf.errors import CheckpointError
from rolekd_tf.fileio import atomic_write_json, clean_stale_temporaries
from rolekd_tf.search import oracle as oracle_mod


def member_seed(base_seed: int, member: int) -> int:
    """Per-member seed (data order, initial weights): members must not train identically."""
    # wrapped into int32 (config.SEED_MAX), the range keras.utils.set_random_seed and the
    # stateless seed tensors accept; unchanged for base seeds below 2_146_483
    return (int(base_seed) * 1000 + 7919 * (int(member) + 1) % 1000003) % 2**31


def _reseed_task(task, seed: int):
    """A shallow copy of ``task`` whose ``cfg.seed`` is ``seed`` (data order / init), sharing the
    loaded splits and teacher. Tasks without a dataclass ``cfg`` are returned as they are."""
    if hasattr(task, "with_seed"):
        return task.with_seed(seed)
    cfg = getattr(task, "cfg", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return task
    t = copy.copy(task)
    t.cfg = dataclasses.replace(cfg, seed=int(seed))
    return t


class ArrayPolicyTable:
    """NumPy stand-in for ``PolicyTable`` (same two setters), used when the TF pipeline is absent."""

    def __init__(self, epochs: int):
        self.table = np.zeros((int(epochs), POLICY_LEN), np.int32)

    def assign_schedule(self, array):
        self.table[...] = np.asarray(array, np.int32)

    def set_row(self, epoch: int, policy):
        self.table[int(epoch)] = np.asarray(policy, np.int32)

    def as_array(self):
        return self.table.copy()


class PBTTuner(keras_tuner.Tuner):
    """Keras Tuner ``Tuner`` whose trials are PBT segments of a :class:`PBTOracle`.

    Args:
        oracle: a :class:`~rolekd_tf.search.oracle.PBTOracle`.
        task_factory: zero-argument callable returning the Task (``rolekd_tf.training.Task``
            interface); called once, lazily, in the process that runs trials (never on a chief).
        base_seed: seeds per-member data order and initial weights (:func:`member_seed`).
        reuse_model: keep one compiled model per process and swap states (default), or rebuild
            after ``clear_session()`` for every trial.
        tb_dir: TensorBoard root (``member_<id>/`` below it); default ``<project>/tb``.
        log: print one progress line per segment (generation, member, epochs, score).
    """

    def __init__(
        self,
        oracle,
        *,
        task_factory: Callable[[], Any],
        base_seed: int = 0,
        reuse_model: bool = True,
        tb_dir: str | None = None,
        log: bool = True,
        directory=None,
        project_name=None,
        overwrite: bool = False,
        **kwargs,
    ):
        self._task_factory = task_factory
        self._task = None
        self._model = None
        self.base_seed = int(base_seed)
        self.reuse_model = bool(reuse_model)
        self._tb_dir = tb_dir
        self.log = log
        self._awaiting = False
        self._idle_sleep = 0.05
        self.segment_times: list[dict] = []
        super().__init__(oracle, hypermodel=None, directory=directory, project_name=project_name,
                         overwrite=overwrite, **kwargs)

    # -------------------------------------------------------------- files
    def _get_tuner_fname(self):
        return str(Path(self.project_dir) / f"{self.tuner_id}.json")

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        atomic_write_json(self._get_tuner_fname(), self.get_state())

    def reload(self):
        if not self._is_worker():
            self.oracle.reload()
        # tuner state is empty ({}), nothing else to restore

    @property
    def tb_dir(self) -> Path:
        return Path(self._tb_dir) if self._tb_dir else Path(self.project_dir) / "tb"

    @property
    def task(self):
        if self._task is None:
            self._task = self._task_factory()
        return self._task

    # -------------------------------------------------------- search loop
    def on_search_begin(self):
        clean_stale_temporaries(self.project_dir)
        for d in Path(self.project_dir).glob("trial_*"):
            clean_stale_temporaries(d)

    def pre_create_trial(self):
        # The loop in BaseTuner.search asks again immediately after an IDLE trial (the generation
        # is still running on other workers): back off instead of spinning on the chief.
        if self._awaiting:
            time.sleep(self._idle_sleep)
            self._idle_sleep = min(self._idle_sleep * 2, 2.0)
        self._awaiting = True

    def on_trial_begin(self, trial):
        self._awaiting = False
        self._idle_sleep = 0.05

    def on_trial_end(self, trial):
        if trial.status in ("INVALID", "FAILED"):
            # Keras Tuner keeps the traceback in trial.json only; say it where the user looks.
            hp = trial.hyperparameters.values
            print(f"[pbt] gen {hp.get(oracle_mod.HP_GENERATION)} · member {hp.get(oracle_mod.HP_MEMBER)} · "
                  f"trial {trial.trial_id} FAILED: {oracle_mod._last_line(trial.message)} "
                  f"(traceback in {Path(self.get_trial_dir(trial.trial_id)) / 'trial.json'})", flush=True)
        super().on_trial_end(trial)

    def on_search_end(self):
        self._model = None
        self._release()

    # ------------------------------------------------------------ a trial
    def run_trial(self, trial, *args, **kwargs):
        import keras

        hp = trial.hyperparameters.values
        member = int(hp[oracle_mod.HP_MEMBER])
        gen = int(hp[oracle_mod.HP_GENERATION])
        e0 = int(hp[oracle_mod.HP_INITIAL_EPOCH])
        e1 = int(hp[oracle_mod.HP_EPOCHS])
        restore = str(hp[oracle_mod.HP_RESTORE] or "")
        src = str(hp.get(oracle_mod.HP_EXPLOITED, "") or "")
        policy = json.loads(hp[oracle_mod.HP_POLICY])
        seed = member_seed(self.base_seed, member)
        if self.log:
            how = f"restore trial {restore}" if restore else "fresh model"
            if src:
                how += f", exploited member {src}"
            print(f"[pbt] gen {gen} · member {member} · epochs {e0}→{e1} · trial {trial.trial_id} "
                  f"({how})", flush=True)
        t_start = time.perf_counter()
        task = _reseed_task(self.task, seed)

        # 1. model: fresh (clear_session first) or reused, then restore
        rebuilt = False
        if not restore or self._model is None or not self.reuse_model:
            self._model = None
            self._release()
            keras.utils.set_random_seed(seed)
            self._model = task.build()
            rebuilt = True
        elif e0 == 0:
            raise CheckpointError(f"trial {trial.trial_id}: epoch 0 segment with a checkpoint to restore")
        t_built = time.perf_counter()
        if restore:
            ck = oracle_mod.checkpoint_path(self.project_dir, restore)
            meta = task.load_state(self._model, ck)
            got = int((meta or {}).get("epoch", e0))
            if got != e0:
                raise CheckpointError(f"checkpoint {ck} holds epoch {got}, segment starts at {e0}")
        elif e0 != 0:
            raise CheckpointError(f"trial {trial.trial_id}: starts at epoch {e0} without a checkpoint")
        t_restored = time.perf_counter()

        # 2. policy table rows for this segment, then train
        table = self._policy_table(task, policy)
        history = task.fit(self._model, policy_table=table, initial_epoch=e0, epochs=e1)
        history = {k: [float(v) for v in vs] for k, vs in (history or {}).items()}
        t_trained = time.perf_counter()

        # 3. checkpoint (atomic), evaluate
        ck_out = oracle_mod.checkpoint_path(self.project_dir, trial.trial_id)
        task.save_state(self._model, ck_out, epoch=e1,
                        extra={"member": member, "generation": gen, "trial_id": trial.trial_id})
        t_saved = time.perf_counter()
        val = float(task.evaluate(self._model))
        t_eval = time.perf_counter()
        if not self.reuse_model:
            self._model = None
        del table

        times = {
            "build_seconds": t_built - t_start,
            "restore_seconds": t_restored - t_built,
            "train_seconds": t_trained - t_restored,
            "save_seconds": t_saved - t_trained,
            "eval_seconds": t_eval - t_saved,
            "trial_seconds": t_eval - t_start,
        }
        self.segment_times.append({"trial_id": trial.trial_id, "member": member, **times})
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        atomic_write_json(trial_dir / "segment.json", {
            "trial_id": trial.trial_id, "member": member, "generation": gen,
            "initial_epoch": e0, "epochs": e1, "restored_from": restore, "exploited_from": src,
            "rebuilt_model": rebuilt, "policy": policy, "val_accuracy": val, "history": history,
            **times,
        })
        self._write_tb(member, e0, e1, history, val, gen)
        if self.log:
            print(f"[pbt] gen {gen} · member {member} · epoch {e1} · val_accuracy {val:.4f} "
                  f"(train {times['train_seconds']:.1f} s, total {times['trial_seconds']:.1f} s)",
                  flush=True)
        out = {oracle_mod.OBJECTIVE: val, **{k: float(v) for k, v in times.items()}}
        for k in ("loss", "accuracy"):
            if history.get(k):
                out[f"train_{k}"] = float(history[k][-1])
        return out

    def _policy_table(self, task, policy):
        epochs = int(getattr(task, "total_epochs", 0) or 0)
        try:
            from rolekd_tf.augment.pipeline import PolicyTable
        except ImportError:  # augment pipeline not available: a plain array (fake tasks only)
            PolicyTable = ArrayPolicyTable
        table = PolicyTable(epochs)
        table.assign_schedule(np.tile(np.asarray(policy, dtype=np.int32), (epochs, 1)))
        return table

    def _write_tb(self, member, e0, e1, history, val, gen):
        """Scalars per member (``tb/member_<id>``), x axis = epoch. Written with the core
        ``tf.summary.write`` + the scalars plugin tag (what ``tf.summary.scalar`` emits), so the
        ``tensorboard`` package is needed to view the logs, not to write them. Never fails a trial."""
        try:
            import tensorflow as tf
            from tensorflow.core.framework import summary_pb2

            md = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
            w = tf.summary.create_file_writer(str(self.tb_dir / f"member_{member}"))
            try:
                with w.as_default():
                    def put(tag, value, step):
                        tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step),
                                         metadata=md)

                    for name, vals in history.items():
                        for i, v in enumerate(vals):
                            put(f"epoch/{name}", v, e0 + i + 1)
                    put("pbt/val_accuracy", val, e1)
                    put("pbt/generation", gen, e1)
                w.flush()
            finally:
                w.close()
        except Exception as e:  # noqa: BLE001 - logging must never fail a segment
            if not getattr(self, "_tb_warned", False):
                print(f"[pbt] warning: TensorBoard logging disabled ({type(e).__name__}: {e})",
                      file=sys.stderr)
                self._tb_warned = True

    @staticmethod
    def _release():
        import keras

        keras.backend.clear_session()
        gc.collect()

    # Keras Tuner's model-loading helpers do not apply (one trial = one segment).
    def load_model(self, trial):
        raise NotImplementedError("PBT trials hold segment checkpoints; use Task.load_state")

    def save_model(self, trial_id, model, step=0):  # pragma: no cover - unused
        pass
