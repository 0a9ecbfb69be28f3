"""Training one model (teacher or distilled student) into a resumable run directory.

Run directory layout (every file written atomically)::

    RUN_DIR/config.yaml      resolved config
    RUN_DIR/run.json         role, --init / --teacher / --schedule provenance
    RUN_DIR/schedule.json    the per-epoch augmentation schedule used (if any)
    RUN_DIR/checkpoints/state.npz + state.json   last finished epoch (weights + optimizer)
    RUN_DIR/tb/              TensorBoard logs
    RUN_DIR/metrics.json     per-epoch train/val metrics, final accuracies, wall time, and
                             ``test_accuracy`` (fraction 0–1; null without a test split) /
                             ``test_examples`` of the final model on the dataset's own test split
    RUN_DIR/model.keras      the trained model (the student alone for distillation runs)

Re-running the same command resumes from the last checkpoint; a different config refuses.
With two or more devices (``train.devices``, or several visible GPUs) the run is trained under
``tf.distribute.MirroredStrategy``; the semantics (global batch, gradient reduction, synchronised
BatchNorm, checkpoints) are documented in :mod:`rolekd_tf.distribute`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rolekd_tf.config import Config, config_from_dict, save_config
from rolekd_tf.errors import CheckpointError, ConfigError, RolekdError, ScheduleError
from rolekd_tf.fileio import (
    atomic_write_json,
    clean_stale_temporaries,
    save_model_atomic,
)


def _keras():
    import keras  # local import: keeps `--help` and config validation fast

    return keras


def step_lr(base_lr: float, epochs: int, milestones, gamma: float):
    """Step schedule: ``lr(epoch) = base_lr · gamma^(number of milestones ≤ epoch/epochs)``."""
    bounds = [int(round(m * epochs)) for m in milestones]

    def fn(epoch: int) -> float:
        return float(base_lr * gamma ** sum(epoch >= b for b in bounds))

    return fn


def make_optimizer(cfg: Config):
    keras = _keras()
    t = cfg.train
    kw = {}
    if t.grad_clip_norm:
        kw["global_clipnorm"] = t.grad_clip_norm
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=t.lr, momentum=t.momentum, nesterov=t.nesterov, **kw)
    return keras.optimizers.Adam(learning_rate=t.lr, epsilon=t.adam_epsilon, **kw)


def load_run_model(run_dir: str | os.PathLike):
    """Load ``RUN_DIR/model.keras`` (the registered layers need no custom_objects)."""
    keras = _keras()
    import rolekd_tf  # noqa: F401  (registers layers)

    path = Path(run_dir) / "model.keras"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {str(run_dir)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(
            f"run directory {str(run_dir)!r} has no model.keras (is the training finished?)"
        )
    _check_keras_archive(path)
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:  # corrupt / foreign file
        raise CheckpointError(f"cannot load {str(path)!r}: {type(e).__name__}: {str(e)[:200]}")


def _check_keras_archive(path: Path) -> None:
    """A ``.keras`` file is a zip archive: say "truncated or corrupt" instead of Keras' "File not
    found" for a cut-off copy, and name the member whose CRC fails for a damaged one."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{str(path)!r} is truncated or not a .keras file (no complete zip archive, "
                              f"{path.stat().st_size} bytes); copy it again or re-run its training")
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{str(path)!r} is truncated or corrupt ({e}); copy it again or re-run "
                              "its training") from None
    if bad is not None:
        raise CheckpointError(f"{str(path)!r} is corrupt (member {bad!r} fails its CRC check); copy it "
                              "again or re-run its training")


def _check_same_stem(model, exact_stem: bool, what: str) -> None:
    """Teacher/init runs must take the same input as the configured model ((pixels − 128)/64 for
    the ``int8.stem`` variant, mean/std-normalised otherwise): one batch feeds both networks."""
    from rolekd_tf.models import has_exact_stem

    theirs = has_exact_stem(model)
    if theirs != bool(exact_stem):
        raise ConfigError(
            f"{what} has int8.stem={str(theirs).lower()} but this config has "
            f"int8.stem={str(bool(exact_stem)).lower()}; teacher, --init run and student must "
            "take the same input (set int8.stem the same for all of them)"
        )


def read_run_config(run_dir: str | os.PathLike) -> Config:
    """The config of a run directory (``config.yaml``; files written before the ``int8`` section
    existed are read with their ``model.exact_*`` keys moved into it)."""
    p = Path(run_dir) / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a run directory (no config.yaml)")
    from rolekd_tf.config import read_yaml, upgrade_legacy_keys

    return config_from_dict(upgrade_legacy_keys(read_yaml(p)))


class Task:
    """Data + model factory for one role; used by ``train.py`` and by each PBT member.

    ``role="teacher"``: the full-precision (or any) model of ``cfg.model`` trained on its own.
    ``role="student"``: a :class:`~rolekd_tf.distill.Distiller` with the frozen teacher from
    ``teacher_dir/model.keras`` and the student ``cfg.model``, KD loss ``cfg.distill.kd``.
    ``init_dir``: copy that run's trainable weights into the model (BN statistics start fresh).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        role: str = "teacher",
        teacher_dir: str | None = None,
        init_dir: str | None = None,
        splits=None,
        verbose: int = 0,
    ):
        if role not in ("teacher", "student"):
            raise ConfigError(f"role={role!r}; allowed: teacher, student")
        if role == "student" and not teacher_dir and cfg.distill.kd != "none":
            raise ConfigError(
                f"distill.kd={cfg.distill.kd!r} needs a teacher run: pass --teacher RUN_DIR (or --kd none)"
            )
        if cfg.train.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        self.cfg = cfg
        self.role = role
        self.teacher_dir = teacher_dir
        self.init_dir = init_dir
        self.verbose = verbose
        if splits is None:
            from rolekd_tf.data import load_splits

            splits = load_splits(
                cfg.data.dataset,
                train_size=cfg.data.train_size,
                val_size=cfg.data.val_size,
                holdout_size=cfg.data.holdout_size,
                seed=cfg.seed,
                cache_dir=cfg.data.cache_dir,
                test_split=cfg.data.test_split,
            )
        self.splits = splits
        self.info = splits.info
        if cfg.int8.stem:
            # the int8-exact stem takes (pixels − 128)/64 whatever the dataset: the data pipelines
            # normalise with that fixed mean/std
            from rolekd_tf.models import input_normalisation

            mean, std = input_normalisation(True, splits.info.mean, splits.info.std)
            self.info = dataclasses.replace(splits.info, mean=mean, std=std)
        n = len(splits.x_train)
        if n < cfg.train.batch_size:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} is larger than the training split ({n} images)"
            )
        self.steps_per_epoch = n // cfg.train.batch_size
        self.total_epochs = cfg.train.epochs
        self.teacher = self._load_teacher() if teacher_dir else None

    def with_seed(self, seed: int) -> "Task":
        """A copy sharing data and teacher whose data order, augmentation draws and init use
        ``seed`` (PBT members must differ, or they train identically and tie)."""
        import copy
        import dataclasses

        other = copy.copy(self)
        other.cfg = dataclasses.replace(self.cfg, seed=int(seed))
        return other

    # ----------------------------------------------------------------- models
    def _load_teacher(self):
        teacher = load_run_model(self.teacher_dir)
        nc = int(teacher.output.shape[-1])
        if nc != self.info.num_classes:
            raise CheckpointError(
                f"teacher {self.teacher_dir!r} predicts {nc} classes but dataset "
                f"{self.cfg.data.dataset!r} has {self.info.num_classes}"
            )
        shape = tuple(teacher.input.shape[1:])
        if shape != tuple(self.info.image_shape):
            raise CheckpointError(
                f"teacher {self.teacher_dir!r} takes input {shape} but the dataset images are "
                f"{tuple(self.info.image_shape)}"
            )
        _check_same_stem(teacher, self.cfg.int8.stem, f"teacher {self.teacher_dir!r}")
        teacher.trainable = False
        return teacher

    def build_network(self):
        from rolekd_tf.models import build_model

        m = self.cfg.model
        return build_model(
            m.name,
            num_classes=self.info.num_classes,
            w_bits=m.w_bits,
            a_bits=m.a_bits,
            input_shape=tuple(self.info.image_shape),
            bn_momentum=m.bn_momentum,
            int8=self.cfg.int8,
        )

    def build(self):
        """A compiled model ready for ``fit``: a Distiller (task loss + KD, coupled L2)."""
        from rolekd_tf.distill import Distiller

        student = self.build_network()
        from rolekd_tf import distribute

        if distribute.replicas() > 1:
            # global-batch BN statistics under a multi-device strategy (rolekd_tf.distribute)
            distribute.synchronize_batchnorm(student)
        if self.init_dir:
            from rolekd_tf.models import copy_trainable_weights

            src = load_run_model(self.init_dir)
            _check_same_stem(src, self.cfg.int8.stem, f"--init run {self.init_dir!r}")
            copy_trainable_weights(src, student)
        d = self.cfg.distill
        kd = d.kd if self.teacher is not None else "none"
        model = Distiller(
            self.teacher,
            student,
            kd=kd,
            update=d.update,
            weight_decay=self.cfg.train.weight_decay,
            temperature=d.temperature,
            soft_alpha=d.soft_alpha,
            mhgd_heads=d.mhgd_heads,
            lambda_init=d.lambda_init,
            clip_e0=d.clip_e0,
            adapter=d.adapter,
            seed=self.cfg.seed,
        )
        from rolekd_tf.models.device import choose_jit_compile

        model.compile(optimizer=make_optimizer(self.cfg), jit_compile=choose_jit_compile(self.cfg.train.jit_compile))
        # Build the optimizer's slots now so a checkpoint can be restored before the first step.
        model.optimizer.build(model.trainable_variables)
        return model

    # ------------------------------------------------------------------- data
    def train_dataset(self, policy_table=None, start_epoch: int = 0):
        from rolekd_tf.augment.pipeline import make_train_dataset

        a = self.cfg.augment
        return make_train_dataset(
            self.splits.x_train,
            self.splits.y_train,
            self.info,
            batch_size=self.cfg.train.batch_size,
            seed=self.cfg.seed,
            policy_table=policy_table,
            start_epoch=start_epoch,
            pad_crop=a.pad_crop,
            flip=a.flip,
            cutout=a.cutout,
        )

    def eval_dataset(self, which: str = "val"):
        from rolekd_tf.augment.pipeline import make_eval_dataset

        x = getattr(self.splits, f"x_{which}")
        y = getattr(self.splits, f"y_{which}")
        return make_eval_dataset(x, y, self.info, batch_size=max(self.cfg.train.batch_size, 256))

    # --------------------------------------------------------------- training
    def callbacks(self):
        keras = _keras()
        from rolekd_tf.distill.callbacks import EpochTracker, LambdaSchedule

        t, d = self.cfg.train, self.cfg.distill
        cbs = [
            keras.callbacks.LearningRateScheduler(step_lr(t.lr, t.epochs, t.lr_milestones, t.lr_gamma)),
            EpochTracker(),
        ]
        if self.teacher is not None and d.kd != "none":
            # weighted_sum / weighted_clip: λ reaches the gradient (paper: ×0.5 every 30%);
            # clip_to_task_grad: λ is only logged, decayed as the released code does (×0.6).
            factor = d.lambda_decay if d.update in ("weighted_sum", "weighted_clip") else 0.6
            cbs.append(LambdaSchedule(t.epochs, lambda_init=d.lambda_init, factor=factor,
                                      fractions=d.lambda_milestones))
        return cbs

    def fit(self, model, *, policy_table=None, initial_epoch: int, epochs: int, callbacks=()):
        """Train epochs ``[initial_epoch, epochs)``; returns the Keras history dict."""
        if epochs <= initial_epoch:
            return {}
        ds = self.train_dataset(policy_table, start_epoch=initial_epoch)
        hist = model.fit(
            ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=self.steps_per_epoch,
            validation_data=self.eval_dataset("val") if len(self.splits.x_val) else None,
            callbacks=list(self.callbacks()) + list(callbacks),
            verbose=self.verbose,
            shuffle=False,  # the pipeline reshuffles per epoch itself, seeded
        )
        return hist.history

    def evaluate(self, model, which: str = "val") -> float:
        """Top-1 accuracy (fraction) of the (student) model on a split, inference-mode BN."""
        x = getattr(self.splits, f"x_{which}")
        if len(x) == 0:
            return float("nan")
        res = model.evaluate(self.eval_dataset(which), verbose=0, return_dict=True)
        return float(res["accuracy"])

    # ----------------------------------------------------------- checkpoints
    def save_state(self, model, path, *, epoch: int, extra: dict | None = None) -> None:
        """Write weights + optimizer state after ``epoch`` finished epochs, atomically
        (:mod:`rolekd_tf.distill.checkpoint`, the one checkpoint format)."""
        from rolekd_tf.distill import checkpoint

        checkpoint.save_state(model, path, epoch=epoch, extra=extra)

    def load_state(self, model, path) -> dict:
        """Restore what :meth:`save_state` wrote; returns its metadata (``epoch`` …)."""
        from rolekd_tf.distill import checkpoint

        return checkpoint.load_state(model, path)


def _checkpoint_callback(task: Task, model, run_dir: Path, history: dict, t0: float, prior_wall: float):
    keras = _keras()

    class _Checkpoint(keras.callbacks.Callback):
        """Checkpoint + metrics.json after every epoch; stop with a message on NaN/inf loss."""

        #: epoch of the checkpoint on disk (None: none written yet); set by run_training
        saved_epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = int(epoch)

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True
                self._diverged = float(loss)
                self._diverged_at = (getattr(self, "_epoch", 0), int(batch))

        def on_epoch_end(self, epoch, logs=None):
            if getattr(self, "_diverged", None) is not None:
                return  # keep the last good checkpoint
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            history.setdefault("epoch", []).append(int(epoch))
            wall = prior_wall + time.time() - t0
            if (epoch + 1) % task.cfg.train.checkpoint_every == 0 or epoch + 1 == task.total_epochs:
                task.save_state(model, run_dir / "checkpoints" / "state.npz", epoch=epoch + 1,
                                extra={"wall_time_s": wall, "history": history})
                self.saved_epoch = epoch + 1
                atomic_write_json(run_dir / "metrics.json", {"history": history, "wall_time_s": wall,
                                                             "finished": False})

    return _Checkpoint()


def _provenance(role, init, teacher, schedule) -> dict:
    ab = lambda p: str(Path(p).resolve()) if p else None  # noqa: E731
    return {"role": role, "init": ab(init), "teacher": ab(teacher), "schedule": ab(schedule)}


def prepare_schedule(cfg: Config, schedule_path: str | None):
    """Load a schedule file and fit it to ``cfg.train.epochs`` (stretch by an integer multiple)."""
    if not schedule_path:
        return None
    from rolekd_tf.augment.policy import load_schedule

    sched = load_schedule(schedule_path, epochs=cfg.augment.schedule_epochs)
    E = cfg.train.epochs
    if sched.epochs == E:
        return sched
    if sched.epochs > E:
        # A longer schedule (e.g. a 200-epoch search used for a short run) is cut, never reused.
        from rolekd_tf.augment.policy import Schedule

        return Schedule(list(sched.policies[:E]))
    if not cfg.augment.stretch:
        raise ScheduleError(
            f"schedule {schedule_path!r} has {sched.epochs} epochs but training runs {E}; "
            "set augment.stretch=true to stretch it by an integer multiple"
        )
    return sched.stretch(E)


def _read_run_file(path: Path, *, as_json: bool):
    """A run-directory file as text / JSON; damage is a one-line CheckpointError, not a crash."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if as_json else text
    except UnicodeDecodeError as e:
        why = f"byte {e.start} is not UTF-8"
    except json.JSONDecodeError as e:
        why = f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
    raise CheckpointError(f"{str(path)!r} is damaged ({why}); fix or remove it, or start again with "
                          "--overwrite")


def _upgraded_config_text(text: str) -> str:
    """``config.yaml`` text of a run written before the ``int8`` section, as the current version
    writes the same config (so such a run resumes / counts as done); other text unchanged."""
    import yaml

    from rolekd_tf.config import LEGACY_INT8_KEYS, upgrade_legacy_keys

    try:
        raw = yaml.safe_load(text)
        if not (isinstance(raw, dict) and isinstance(raw.get("model"), dict) and set(raw["model"]) & set(LEGACY_INT8_KEYS)):
            return text
        return config_from_dict(upgrade_legacy_keys(raw)).to_yaml()
    except (yaml.YAMLError, RolekdError):
        return text


def check_same_config(d: Path, cfg_yaml: str, prov: dict, *, prov_file: str, refusal: str) -> None:
    """Refuse the directory ``d`` if its ``config.yaml`` (upgraded as :func:`_upgraded_config_text`)
    or the ``prov`` keys of its ``prov_file`` (JSON) differ from ``cfg_yaml`` / ``prov``: a
    CheckpointError ``refusal.format(dir=…, diff=…)``. Nothing to check without ``config.yaml``."""
    if not (d / "config.yaml").exists():
        return
    old = _upgraded_config_text(_read_run_file(d / "config.yaml", as_json=False))
    old_prov = {}
    if (d / prov_file).exists():
        old_prov = _read_run_file(d / prov_file, as_json=True)
        if not isinstance(old_prov, dict):
            raise CheckpointError(f"{str(d / prov_file)!r} is damaged (not a JSON object); "
                                  "start again with --overwrite")
    if old != cfg_yaml or {k: old_prov.get(k) for k in prov} != prov:
        diff = _first_difference(old, cfg_yaml, old_prov, prov)
        raise CheckpointError(refusal.format(dir=repr(str(d)), diff=diff))


def _existing_run(run_dir: Path, cfg_yaml: str, prov: dict) -> dict | None:
    """Refuse a run directory of another configuration; the metrics if it is already finished."""
    if not (run_dir / "config.yaml").exists():
        return None
    check_same_config(run_dir, cfg_yaml, prov, prov_file="run.json",
                      refusal="run directory {dir} was created by another configuration ({diff}); "
                              "use another --out, or --overwrite to start again")
    if (run_dir / "metrics.json").exists():
        m = _read_run_file(run_dir / "metrics.json", as_json=True)
        if isinstance(m, dict) and m.get("finished") and (run_dir / "model.keras").exists():
            return m
    return None


def run_inputs(cfg: Config, *, init=None, teacher=None, schedule=None, config_path=None) -> dict:
    """label → path of every file/folder a training command reads (for :func:`rundir.check_out`)."""
    from rolekd_tf.rundir import dataset_path

    return {"teacher run": teacher, "--init run": init, "schedule file": schedule,
            "dataset": dataset_path(cfg.data.dataset), "config file": config_path}


def run_training(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    init: str | None = None,
    teacher: str | None = None,
    schedule: str | None = None,
    overwrite: bool = False,
    verbose: int = 1,
    config_path: str | os.PathLike | None = None,
) -> dict:
    """Train per ``cfg`` into ``out_dir`` (resuming if it holds a checkpoint of the same run), on
    the devices of ``cfg.train.devices`` (:func:`rolekd_tf.distribute.select_strategy`).

    Everything (output location, config, dataset, teacher, ``--init``, schedule, model) is checked
    before the first write or delete; the directory is locked while the run uses it
    (:mod:`rolekd_tf.rundir`). ``config_path``: the config file, only to refuse an ``out_dir``
    that contains it. Returns the final metrics dict (also written to ``out_dir/metrics.json``).
    """
    import contextlib

    from rolekd_tf import distribute

    strategy = distribute.select_strategy(cfg.train.devices)
    distribute.check_batch_size(cfg.train.batch_size, strategy)
    # Everything that creates or assigns variables (models, optimizer, checkpoint restore,
    # callbacks inside fit) runs in the strategy's scope.
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _run_training(cfg, out_dir, init=init, teacher=teacher, schedule=schedule,
                             overwrite=overwrite, verbose=verbose, config_path=config_path)


def _run_training(cfg: Config, out_dir, *, init, teacher, schedule, overwrite, verbose, config_path) -> dict:
    from rolekd_tf import rundir

    run_dir = Path(out_dir)
    role = "student" if teacher else "teacher"
    schedule = schedule or cfg.augment.schedule
    rundir.check_out(run_dir, run_inputs(cfg, init=init, teacher=teacher, schedule=schedule,
                                         config_path=config_path))
    state = rundir.inspect(run_dir, "run", overwrite=overwrite)
    prov = _provenance(role, init, teacher, schedule)
    cfg_yaml = cfg.to_yaml()
    if state == "ours" and not overwrite:
        done = _existing_run(run_dir, cfg_yaml, prov)
        if done is not None:
            print(f"{run_dir} is already finished; nothing to do", flush=True)
            return done
    # Validate everything that can fail before writing (or, for --overwrite, moving) anything.
    sched = prepare_schedule(cfg, schedule)
    keras = _keras()  # (imported only now: a refused output directory is reported at once)
    keras.utils.set_random_seed(cfg.seed)
    task = Task(cfg, role=role, teacher_dir=teacher, init_dir=init, verbose=verbose)
    model = task.build()

    with rundir.claim(run_dir, "run", state, overwrite=overwrite) as claim:
        if not claim.fresh:  # decided again under the lock: another process may have run meanwhile
            done = _existing_run(run_dir, cfg_yaml, prov)
            if done is not None:
                print(f"{run_dir} is already finished; nothing to do", flush=True)
                return done
        return _train_locked(task, model, sched, run_dir, claim, prov, teacher)


def _train_locked(task: "Task", model, sched, run_dir: Path, claim, prov: dict, teacher) -> dict:
    """The part of :func:`run_training` that writes: ``run_dir`` is locked by this process."""
    keras = _keras()
    cfg = task.cfg
    clean_stale_temporaries(run_dir)
    clean_stale_temporaries(run_dir / "checkpoints")
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "run.json", prov)

    table = None
    if sched is not None:
        from rolekd_tf.augment.pipeline import PolicyTable

        sched.save(run_dir / "schedule.json")
        table = PolicyTable(cfg.train.epochs)
        table.assign_schedule(sched.as_array())
    claim.started()  # the new run stands: an --overwrite'n old directory can go now

    initial_epoch, history, prior_wall = 0, {}, 0.0
    state = run_dir / "checkpoints" / "state.npz"
    if state.exists():
        meta = task.load_state(model, state)
        initial_epoch = int(meta["epoch"])
        prior_wall = float(meta.get("wall_time_s", 0.0))
        if "history" in meta:  # saved with the weights: metrics.json may lag one epoch behind
            history = meta["history"]
        elif (run_dir / "metrics.json").exists():
            history = _read_run_file(run_dir / "metrics.json", as_json=True).get("history", {})
        history = {k: v[:initial_epoch] for k, v in history.items()}
        print(f"resuming {run_dir} from epoch {initial_epoch}/{cfg.train.epochs}", flush=True)

    d = cfg.distill
    if initial_epoch == 0 and d.mhgd_pretrain_epochs > 0 and getattr(model, "mhgd", None) is not None:
        # Original MHGD: heads trained on the teacher alone, then frozen (0 = released code).
        print(f"pre-training MHGD heads on the teacher for {d.mhgd_pretrain_epochs} epochs", flush=True)
        model.pretrain_mhgd_heads(task.train_dataset(table), d.mhgd_pretrain_epochs,
                                  steps_per_epoch=task.steps_per_epoch)

    t0 = time.time()
    ckpt = _checkpoint_callback(task, model, run_dir, history, t0, prior_wall)
    ckpt.saved_epoch = initial_epoch if state.exists() else None
    cbs = [ckpt, keras.callbacks.TensorBoard(str(run_dir / "tb"), update_freq="epoch")]
    task.fit(model, policy_table=table, initial_epoch=initial_epoch, epochs=cfg.train.epochs, callbacks=cbs)
    if getattr(ckpt, "_diverged", None) is not None:
        raise RolekdError(_divergence_message(cfg, ckpt, state))
    wall = prior_wall + time.time() - t0
    val_acc = task.evaluate(model, "val")
    holdout_acc = task.evaluate(model, "holdout")
    # The dataset's own test split: read once, here, on the final model (searches never load it).
    n_test = int(len(task.splits.x_test))
    test_acc = task.evaluate(model, "test") if n_test else None
    from rolekd_tf import distribute

    if distribute.replicas() > 1:
        distribute.synchronize_batchnorm(model.student, False)  # the saved model has no strategy
    save_model_atomic(model.student, run_dir / "model.keras")
    metrics: dict[str, Any] = {
        "test_accuracy": test_acc,
        "test_examples": n_test,
        "history": history,
        "final": {
            "val_accuracy": val_acc,
            "holdout_accuracy": holdout_acc,
            "test_accuracy": test_acc,
            "test_examples": n_test,
            "test_split": task.splits.test_split,
            "epochs": cfg.train.epochs,
            "train_images": int(len(task.splits.x_train)),
            "val_images": int(len(task.splits.x_val)),
            "holdout_images": int(len(task.splits.x_holdout)),
            "model": cfg.model.name,
            "w_bits": cfg.model.w_bits,
            "a_bits": cfg.model.a_bits,
            "kd": cfg.distill.kd if teacher else "none",
            "params": int(model.student.count_params()),
        },
        "wall_time_s": wall,
        "finished": True,
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def _divergence_message(cfg: Config, ckpt, state: Path) -> str:
    """One line: where the loss stopped being finite, which checkpoint really exists, and the
    settings that scale the update (listed, not blamed: any of them, or the data, can cause it)."""
    epoch, step = ckpt._diverged_at
    if ckpt.saved_epoch and state.exists():
        kept = f"the last good checkpoint (end of epoch {ckpt.saved_epoch}) is kept in {str(state)!r}"
    else:
        kept = (f"no checkpoint was written before it (the first comes after epoch "
                f"{min(cfg.train.checkpoint_every, cfg.train.epochs)})")
    t, d = cfg.train, cfg.distill
    knobs = [f"train.lr={t.lr:g}", f"train.optimizer={t.optimizer}", f"train.weight_decay={t.weight_decay:g}",
             f"train.grad_clip_norm={'null' if t.grad_clip_norm is None else format(t.grad_clip_norm, 'g')}"]
    if d.kd != "none":
        knobs += [f"distill.kd={d.kd}", f"distill.lambda_init={d.lambda_init:g}",
                  f"distill.temperature={d.temperature:g}"]
    return (f"training diverged: the loss became {ckpt._diverged} in epoch {epoch + 1}, step {step + 1}; "
            f"{kept}. Settings that scale the updates: {', '.join(knobs)}; a smaller step or "
            "gradient clipping usually helps, else check the data")


def _first_difference(old_yaml: str, new_yaml: str, old_prov: dict, prov: dict) -> str:
    import yaml

    def flat(d, pre=""):
        out = {}
        for k, v in (d or {}).items():
            if isinstance(v, dict):
                out.update(flat(v, f"{pre}{k}."))
            else:
                out[f"{pre}{k}"] = v
        return out

    a, b = flat(yaml.safe_load(old_yaml)), flat(yaml.safe_load(new_yaml))
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: {a.get(k)!r} there, {b.get(k)!r} now"
    for k in prov:
        if old_prov.get(k) != prov.get(k):
            return f"--{k}: {old_prov.get(k)!r} there, {prov.get(k)!r} now"
    return "unknown difference"
