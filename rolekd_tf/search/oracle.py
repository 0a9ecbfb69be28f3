"""PBT as PBA runs it, as a Keras Tuner :class:`~keras_tuner.Oracle`.

**One Keras Tuner trial = one member's segment** of ``ready_interval`` epochs (the last segment
may be shorter). The trial's hyperparameter *values* (not a search space: the values dict travels
through Keras Tuner's gRPC protos unchanged) carry

=====================  =====================================================================
``pbt/member``         member index 0..N-1 (int)
``pbt/generation``     generation g (int): the segment ``[g·R, min((g+1)·R, E))``
``pbt/initial_epoch``  first epoch to train (Hyperband's ``tuner/initial_epoch``)
``pbt/epochs``         train up to (exclusive) this epoch (Hyperband's ``tuner/epochs``)
``pbt/restore_from``   trial id whose checkpoint to load ("" = fresh model), Hyperband's
                       ``tuner/trial_id`` pattern: the member's own previous trial, or after an
                       exploit the source's latest trial
``pbt/policy``         the member's policy for the segment: JSON text of 60 ints
``pbt/exploited_from`` member id this member cloned at the last ready point ("" = none)
=====================  =====================================================================

**Schedule: synchronous by generation.** A generation's N trials can run in any order and on any
number of workers; when the last of them reports, the oracle ranks all members by their latest
objective (``val_accuracy``, inference-mode BN) and applies exploit/explore, then releases the next
generation. Workers asking for a trial while the generation is still running get an ``IDLE``
trial (Keras Tuner's "ask again" status). Why not PBA/Ray's asynchronous mode: with one device
PBA time-shares its 16 trials, so they stay in near lock-step anyway, while the synchronous rule
makes every decision a pure function of (seed, scores) — identical for 1 or 5 workers, for any
completion order, and across a kill/resume — and every ranking compares members at the same
epoch. Consequently the target "takes over the source's epoch" trivially (both are at the same
epoch); the lineage rows still record both.

Start policies: PBA's all-zero policy for every member (``init="zeros"``, the default), or
``init="random"`` — one PBA explore step from zeros per member, drawn from its own generator
seeded by the search seed (:func:`rolekd_tf.search.space.initial_policies`); recorded per member
(``start_policy``) because a member that never exploits trains with it throughout.

Ready point (after generation g, every member at epoch ``E_g < epochs``): sort by score (ties:
lower member id first), ``n = min(ceil(quantile·N), N // 2)``; each member in the bottom ``n``
(plus any member whose segment failed) copies a uniformly drawn top-``n`` member that has a
checkpoint — its latest checkpoint (``restore_from``), its policy and epoch — then explores
(:func:`rolekd_tf.search.space.explore`). A member without a valid source keeps its own state
(a failed member without a source aborts the search). Every exploit is logged as a Ray-Tune
lineage row; a member's log = copy of its clone's log + its own row.

Failed segments. A segment that raises is booked as ``FAILED`` (Keras Tuner retries none:
``max_retries_per_trial=0``) and its member is forced to exploit at the ready point. The search
*stalls* — hands out no more segments, is not ``finished``, and ``search.py`` exits with the first
error — when every member's segment of a generation failed (there is nothing to exploit) or
``max_consecutive_failed_trials`` segments failed in a row. Re-running the same command resumes a
stalled search by retrying the current generation's failed segments from the same checkpoints.

State (members, scores, epochs, lineage, decisions, NumPy RNG state) is JSON in ``oracle.json``
via ``get_state``/``set_state``; every state file is written atomically, and a trial interrupted
by a crash is re-run from the same checkpoint on resume (Keras Tuner's retry queue).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import keras_tuner
import numpy as np
from keras_tuner.src.engine import metrics_tracking
from keras_tuner.src.engine import trial as trial_module

from rolekd_tf.augment.policy import check_policy
from rolekd_tf.errors import ConfigError
from rolekd_tf.fileio import atomic_write_json, clean_stale_temporaries
from rolekd_tf.search import lineage as lineage_mod
from rolekd_tf.search.space import INIT_CHOICES, explore, initial_policy
from rolekd_tf.search.space import initial_policies as make_initial_policies

OBJECTIVE = "val_accuracy"
HP_MEMBER = "pbt/member"
HP_GENERATION = "pbt/generation"
HP_INITIAL_EPOCH = "pbt/initial_epoch"
HP_EPOCHS = "pbt/epochs"
HP_RESTORE = "pbt/restore_from"
HP_POLICY = "pbt/policy"
HP_EXPLOITED = "pbt/exploited_from"

CHECKPOINT_NAME = "state.npz"  #: per-trial checkpoint (Task.save_state writes it + state.json)


def checkpoint_path(project_dir: str | os.PathLike, trial_id: str) -> Path:
    """Where trial ``trial_id`` saves the member state at the end of its segment."""
    return Path(project_dir) / f"trial_{trial_id}" / CHECKPOINT_NAME


def quantile_size(population: int, quantile: float) -> int:
    """PBT's n = ceil(quantile·N), capped at N/2 (so top and bottom never overlap)."""
    return int(min(math.ceil(quantile * population - 1e-9), population // 2))


def _member_id(i: int) -> str:
    return str(int(i))


def _last_line(message) -> str:
    """The last non-empty line of a trial message (a traceback: the exception), shortened."""
    lines = [ln.strip() for ln in str(message or "").splitlines() if ln.strip()]
    return " ".join(lines[-1].split())[:300] if lines else ""


class PBTOracle(keras_tuner.Oracle):
    """Population Based Training over PBA augmentation policies (see the module docstring)."""

    def __init__(
        self,
        *,
        population: int = 16,
        ready_interval: int = 3,
        epochs: int = 200,
        quantile: float = 0.25,
        resample_p: float = 0.2,
        perturb_max: int = 3,
        seed: int = 0,
        init: str = "zeros",
        initial_policies: list[list[int]] | None = None,
        keep_checkpoints: bool = False,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
    ):
        if population < 2:
            raise ConfigError(f"search.population={population} must be >= 2 (PBT needs members to compare)")
        if ready_interval < 1:
            raise ConfigError(f"search.ready_interval={ready_interval} must be >= 1")
        if ready_interval > epochs:
            raise ConfigError(f"search.ready_interval={ready_interval} is longer than search.epochs={epochs}")
        if not 0 < quantile <= 0.5:
            raise ConfigError(f"search.quantile={quantile} must be in (0, 0.5]")
        super().__init__(
            objective=keras_tuner.Objective(OBJECTIVE, "max"),
            max_trials=None,
            seed=int(seed) + 1,  # Keras Tuner replaces a falsy seed by a random one; unused here
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        self.population = int(population)
        self.ready_interval = int(ready_interval)
        self.epochs = int(epochs)
        self.quantile = float(quantile)
        self.resample_p = float(resample_p)
        self.perturb_max = int(perturb_max)
        self.pbt_seed = int(seed)
        self.keep_checkpoints = bool(keep_checkpoints)
        if initial_policies is not None and len(initial_policies) != population:
            raise ConfigError(f"initial_policies has {len(initial_policies)} entries; population is {population}")
        if init not in INIT_CHOICES:
            raise ConfigError(f"search.init={init!r} is not a start-policy rule; allowed: {', '.join(INIT_CHOICES)}")
        # ``initial_policies`` (explicit start policies, tests / benchmarks) wins over ``init``.
        self.init = "custom" if initial_policies is not None else str(init)
        starts = [check_policy(p, f"initial policy {i}") for i, p in enumerate(initial_policies)] \
            if initial_policies is not None else make_initial_policies(init, self.population, self.pbt_seed)
        self._rng = np.random.default_rng(self.pbt_seed)
        self._pbt = self._fresh_state(starts)
        self.verbose = 0  # Keras Tuner's trial tables are noise here; PBTTuner prints progress

    # ------------------------------------------------------------------ state
    def _settings(self) -> dict:
        return {
            "population": self.population,
            "ready_interval": self.ready_interval,
            "epochs": self.epochs,
            "quantile": self.quantile,
            "resample_p": self.resample_p,
            "perturb_max": self.perturb_max,
            "seed": self.pbt_seed,
            "init": self.init,
        }

    def _fresh_state(self, init_policies) -> dict:
        members = {
            _member_id(i): {
                "policy": list(init_policies[i]),
                "epoch": 0,
                "score": None,
                "ckpt_trial": None,
                "failed": False,
                "log": [],
                "history": [],
                "start_policy": list(init_policies[i]),
            }
            for i in range(self.population)
        }
        st = {
            "settings": self._settings(),
            "generation": 0,
            "members": members,
            "plans": {},
            "dispatched": {},
            "done": [],
            "recorded": [],
            "lineage": [],
            "decisions": [],
            "finished": False,
            "stalled": None,
        }
        st["plans"] = {m: self._plan_for(members[m], "") for m in members}
        return st

    def _plan_for(self, member: dict, exploited_from: str) -> dict:
        e0 = int(member["epoch"])
        return {
            "initial_epoch": e0,
            "epochs": min(e0 + self.ready_interval, self.epochs),
            "restore_from": member["ckpt_trial"] or "",
            "policy": list(member["policy"]),
            "exploited_from": exploited_from,
        }

    def get_state(self):
        state = super().get_state()
        pbt = json.loads(json.dumps(self._pbt))  # deep copy, proves JSON-ability
        pbt["rng"] = self._rng.bit_generator.state
        state["pbt"] = pbt
        return state

    def set_state(self, state):
        super().set_state(state)
        pbt = dict(state["pbt"])
        saved = dict(pbt.get("settings", {}))
        saved.setdefault("init", "zeros")  # oracle.json written before search.init existed
        if saved != self._settings():
            diff = next((k for k in self._settings() if saved.get(k) != self._settings()[k]), "?")
            raise ConfigError(
                f"this search was started with search.{diff}={saved.get(diff)!r}, now "
                f"{self._settings()[diff]!r}; use the same config, or --overwrite to start again"
            )
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = pbt.pop("rng")
        self._pbt = pbt

    # Keras Tuner writes its JSON files with a plain open(..., "w"): make them atomic, so a
    # kill -9 never leaves a truncated oracle.json / trial.json behind.
    def save(self):
        atomic_write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        atomic_write_json(Path(self._get_trial_dir(trial.trial_id)) / "trial.json", trial.get_state())

    def reload(self, *, resume_stalled: bool = True):
        """Keras Tuner's reload, plus crash repairs; a stalled search is set to retry its failed
        segments unless ``resume_stalled=False`` (re-reading the state after a search)."""
        super().reload()
        st = self._pbt
        st.setdefault("stalled", None)  # oracle.json written before the key existed
        # A kill inside create_trial between the trial.json and oracle.json saves leaves a trial
        # the saved state never handed out. Forget it (its id is handed out again), so trial ids
        # stay those of an uninterrupted search.
        for tid in [t for t in self.trials if t not in self.start_order]:
            del self.trials[tid]
            (Path(self._get_trial_dir(tid)) / "trial.json").unlink(missing_ok=True)
        # Keras Tuner's end_trial saves oracle.json while the ended trial is still listed in
        # ongoing_trials (it is popped after that save; Tuner.save writes the state again). After a
        # kill between the two saves, Oracle.reload sends that trial to the retry queue although it
        # is already booked: its segment would be trained again, overwriting a checkpoint other
        # members restore from, or fail on a checkpoint already collected. Drop such trials.
        self._retry_queue = [tid for tid in self._retry_queue if tid not in st["recorded"]]
        for tid in self._retry_queue:
            # Re-run from scratch: metrics a killed run reported before its end_trial was saved
            # would otherwise be kept instead of the re-run's (BaseTuner skips update_trial when
            # the objective already exists), pairing a score with another run's checkpoint.
            t = self.trials[tid]
            t.metrics = metrics_tracking.MetricsTracker()
            t.score, t.best_step, t.message = None, 0, None
        # A trial that ended but whose member bookkeeping was not saved (crash between the two
        # saves of a FAILED trial) is applied now; COMPLETED trials are booked in score_trial,
        # inside the same save as their status.
        for tid in list(self.end_order):
            t = self.trials.get(tid)
            if t is not None and tid not in st["recorded"]:
                if t.status == trial_module.TrialStatus.FAILED:
                    self._record(t, failed=True)
        if st["stalled"] is not None and resume_stalled:
            self._retry_failed_segments()
        self.save()
        self.write_outputs()
        self._collect_garbage()

    # -------------------------------------------------------------- trials
    def populate_space(self, trial_id):
        st = self._pbt
        if st["finished"] or st.get("stalled") is not None:
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        for i in range(self.population):
            mid = _member_id(i)
            if mid in st["dispatched"] or mid in st["done"]:
                continue
            plan = st["plans"][mid]
            st["dispatched"][mid] = trial_id
            return {
                "status": trial_module.TrialStatus.RUNNING,
                "values": {
                    HP_MEMBER: i,
                    HP_GENERATION: int(st["generation"]),
                    HP_INITIAL_EPOCH: int(plan["initial_epoch"]),
                    HP_EPOCHS: int(plan["epochs"]),
                    HP_RESTORE: str(plan["restore_from"]),
                    HP_POLICY: json.dumps(plan["policy"]),
                    HP_EXPLOITED: str(plan["exploited_from"]),
                },
            }
        # Every member of this generation is out; wait for the ready point.
        return {"status": trial_module.TrialStatus.IDLE, "values": None}

    def score_trial(self, trial):
        super().score_trial(trial)
        if trial.score is not None and not np.isnan(trial.score):
            self._record(trial, failed=False)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        t = self.trials[trial.trial_id]
        if t.status == trial_module.TrialStatus.FAILED and t.trial_id not in self._pbt["recorded"]:
            self._record(t, failed=True)
            self.save()
        self.write_outputs()
        self._collect_garbage()

    def _record(self, trial, *, failed: bool) -> None:
        st = self._pbt
        if trial.trial_id in st["recorded"]:
            return
        hp = trial.hyperparameters.values
        mid = _member_id(hp[HP_MEMBER])
        gen = int(hp[HP_GENERATION])
        st["recorded"].append(trial.trial_id)
        if gen != st["generation"] or st["dispatched"].get(mid) != trial.trial_id:
            return  # stale (should not happen); never book a segment twice
        m = st["members"][mid]
        plan = st["plans"][mid]
        entry = {
            "generation": gen,
            "trial_id": trial.trial_id,
            "initial_epoch": int(plan["initial_epoch"]),
            "epochs": int(plan["epochs"]),
            "restored_from": plan["restore_from"],
            "exploited_from": plan["exploited_from"],
            "policy": list(plan["policy"]),
        }
        if failed:
            m["failed"] = True
            m["score"] = None
            entry["status"] = "FAILED"
        else:
            metrics = {}
            for name in trial.metrics.metrics:
                try:
                    metrics[name] = float(trial.metrics.get_last_value(name))
                except Exception:  # noqa: BLE001
                    pass
            score = float(trial.metrics.get_last_value(OBJECTIVE))
            m.update(score=score, epoch=int(plan["epochs"]), ckpt_trial=trial.trial_id,
                     policy=list(plan["policy"]), failed=False)
            entry.update(status="COMPLETED", **metrics)
        if failed:
            entry["error"] = _last_line(trial.message)
        m["history"].append(entry)
        st["done"].append(mid)
        if len(st["done"]) == self.population:
            if all(st["members"][k]["failed"] for k in st["done"]):
                # Nothing to rank or copy. (This used to fall through to the ready point, where
                # "every member that did not fail has reached the last epoch" is vacuously true:
                # the search "finished" with exit 0, the initial policy as schedule and
                # segments_completed 0 — RELIABILITY.md O2.)
                self._stall(f"every member's segment of generation {gen} failed")
            else:
                self._ready_point()

    def _check_consecutive_failures(self):
        # Keras Tuner raises RuntimeError when max_consecutive_failed_trials trials in a row
        # failed *anywhere* in end_order — inside end_trial, before the state is saved, and again
        # at every later end_trial, so such a search could never be resumed. Stall instead, on the
        # current streak only.
        streak = 0
        reset = set(self._pbt.get("streak_reset", []))
        for tid in reversed(self.end_order):
            if tid in reset or self.trials[tid].status != trial_module.TrialStatus.FAILED:
                break
            streak += 1
        if self.max_consecutive_failed_trials and streak >= self.max_consecutive_failed_trials:
            self._stall(f"{streak} segments failed in a row")

    def _stall(self, reason: str) -> None:
        st = self._pbt
        if st.get("stalled") is None:
            st["stalled"] = {"generation": int(st["generation"]), "reason": reason,
                             "error": self._first_error()}

    def _first_error(self) -> str:
        for mid in sorted(self._pbt["members"], key=int):
            for h in reversed(self._pbt["members"][mid]["history"]):
                if h.get("status") == "FAILED" and h.get("error"):
                    return f"member {mid}, trial {h['trial_id']}: {h['error']}"
        for tid in reversed(self.end_order):  # not booked yet (the streak check runs first)
            t = self.trials[tid]
            if t.status == trial_module.TrialStatus.FAILED and t.message:
                return f"trial {tid}: {_last_line(t.message)}"
        return "no error message recorded"

    def _retry_failed_segments(self) -> None:
        """Resume a stalled search: the current generation's failed segments run again (same
        plans, same checkpoints); the FAILED entries stay in the members' histories."""
        st = self._pbt
        gen = int(st["generation"])
        for mid, m in st["members"].items():
            last = m["history"][-1] if m["history"] else None
            if m["failed"] and last and last.get("status") == "FAILED" and last.get("generation") == gen:
                m["failed"] = False
                if mid in st["done"]:
                    st["done"].remove(mid)
                st["dispatched"].pop(mid, None)
        # the failed trials before this point do not count toward a new failure streak
        st["streak_reset"] = [tid for tid in self.end_order[-1:]]
        st["stalled"] = None

    # ---------------------------------------------------------- PBT logic
    def ranking(self) -> list[str]:
        """Member ids, best first (failed / unscored last; ties → lower id first)."""
        ms = self._pbt["members"]

        def key(mid):
            s = ms[mid]["score"]
            bad = ms[mid]["failed"] or s is None or np.isnan(s)
            return (1 if bad else 0, -(s if not bad else 0.0), int(mid))

        return sorted(ms, key=key)

    def _ready_point(self) -> None:
        st = self._pbt
        ms = st["members"]
        gen = int(st["generation"])
        epoch_now = max(int(m["epoch"]) for m in ms.values())
        alive = [m for m in ms.values() if not m["failed"]]
        if not alive:  # _record stalls instead; never let all() over nothing finish the search
            raise keras_tuner.errors.FatalError(f"every PBT member failed in generation {gen}")
        if all(int(m["epoch"]) >= self.epochs for m in alive):
            st["finished"] = True
            st["decisions"].append({"generation": gen, "epoch": epoch_now, "final": True,
                                    "ranking": self.ranking(),
                                    "scores": {k: v["score"] for k, v in ms.items()}})
            return
        order = self.ranking()
        n = quantile_size(self.population, self.quantile)
        top, bottom = order[:n], order[len(order) - n:]
        failed = [mid for mid in order if ms[mid]["failed"] and mid not in bottom]
        targets = bottom + failed
        snapshot = {mid: {"policy": list(ms[mid]["policy"]), "epoch": int(ms[mid]["epoch"]),
                          "ckpt_trial": ms[mid]["ckpt_trial"], "log": list(ms[mid]["log"])}
                    for mid in top}
        exploited: dict[str, str] = {}
        decision = {"generation": gen, "epoch": epoch_now, "ranking": order, "top": top,
                    "bottom": bottom, "scores": {k: v["score"] for k, v in ms.items()},
                    "exploits": [], "skipped": []}
        for target in targets:
            sources = [s for s in top if snapshot[s]["ckpt_trial"] and not ms[s]["failed"]]
            if not sources:
                if ms[target]["failed"]:
                    raise keras_tuner.errors.FatalError(
                        f"PBT member {target} failed and no top member has a checkpoint to copy"
                    )
                decision["skipped"].append(target)
                continue
            src = sources[int(self._rng.integers(len(sources)))]
            s = snapshot[src]
            new_policy = explore(s["policy"], self._rng, resample_p=self.resample_p,
                                 perturb_max=self.perturb_max)
            t = ms[target]
            row = lineage_mod.make_row(target, src, max(int(t["epoch"]) - 1, 0), s["epoch"],
                                       s["policy"], new_policy)
            t.update(log=list(s["log"]) + [row], policy=new_policy, epoch=s["epoch"],
                     ckpt_trial=s["ckpt_trial"], failed=False)
            st["lineage"].append(row)
            exploited[target] = src
            decision["exploits"].append({"target": target, "source": src})
        st["decisions"].append(decision)
        st["generation"] = gen + 1
        st["plans"] = {mid: self._plan_for(ms[mid], exploited.get(mid, "")) for mid in ms}
        st["dispatched"] = {}
        st["done"] = []

    # ---------------------------------------------------------- queries
    @property
    def pbt_state(self) -> dict:
        return self._pbt

    @property
    def finished(self) -> bool:
        return bool(self._pbt["finished"])

    @property
    def stalled(self) -> bool:
        return self._pbt.get("stalled") is not None

    def stall_message(self) -> str:
        """One line: why the search stopped before the last epoch (see :attr:`stalled`)."""
        s = self._pbt.get("stalled")
        if not s:
            return ""
        return f"{s['reason']} (first error: {s['error']})"

    def best_member(self) -> str:
        return self.ranking()[0]

    def member_log(self, mid: str) -> list[list]:
        return [list(r) for r in self._pbt["members"][str(mid)]["log"]]

    def start_policy(self, mid: str) -> list[int]:
        """The policy member ``mid`` started the search with (its schedule if it never exploited)."""
        m = self._pbt["members"][str(mid)]
        if "start_policy" in m:
            return list(m["start_policy"])
        return initial_policy()  # oracle.json written before start policies were recorded: zeros

    # ---------------------------------------------------------- side outputs
    @property
    def lineage_dir(self) -> Path:
        return Path(self._project_dir) / "lineage"

    @property
    def members_dir(self) -> Path:
        return Path(self._project_dir) / "members"

    def write_outputs(self) -> None:
        """Per-member lineage logs (``pbt_policy_<id>.txt``, members that exploited at least
        once, like Ray), all rows in ``lineage.jsonl``, per-member metrics JSON and the decisions.
        Atomic writes; files whose content did not change since the last call are skipped."""
        if getattr(self, "_directory", None) is None:
            return
        st = self._pbt
        ldir, mdir = self.lineage_dir, self.members_dir
        if not getattr(self, "_outputs_cleaned", False):
            ldir.mkdir(parents=True, exist_ok=True)
            mdir.mkdir(parents=True, exist_ok=True)
            clean_stale_temporaries(ldir)
            clean_stale_temporaries(mdir)
            self._outputs_cleaned = True
        for mid, m in st["members"].items():
            if m["log"]:
                self._write_if_changed(lineage_mod.log_path(ldir, mid), m["log"],
                                       lambda p, rows=m["log"]: lineage_mod.write_log(rows, p))
            doc = {
                "member": mid, "epoch": m["epoch"], "score": m["score"], "failed": m["failed"],
                "policy": m["policy"], "checkpoint_trial": m["ckpt_trial"],
                "segments": m["history"],
            }
            self._write_if_changed(mdir / f"member_{mid}.json", doc,
                                   lambda p, d=doc: atomic_write_json(p, d))
        from rolekd_tf.fileio import atomic_write_text

        text = lineage_mod.rows_to_text(st["lineage"])
        self._write_if_changed(ldir / "lineage.jsonl", text, lambda p: atomic_write_text(p, text))
        dec = st["decisions"]
        self._write_if_changed(Path(self._project_dir) / "decisions.json", dec,
                               lambda p: atomic_write_json(p, dec))

    def _write_if_changed(self, path: Path, content, write) -> None:
        cache = self.__dict__.setdefault("_written", {})
        key = json.dumps(content, sort_keys=True)
        if cache.get(str(path)) == key and path.exists():
            return
        write(path)
        cache[str(path)] = key

    def _collect_garbage(self) -> None:
        """Delete checkpoints that no member and no pending segment can still restore."""
        if self.keep_checkpoints or getattr(self, "_directory", None) is None:
            return
        st = self._pbt
        keep = {m["ckpt_trial"] for m in st["members"].values()}
        if not st["finished"]:
            keep |= {p["restore_from"] for p in st["plans"].values()}
        keep |= {t.trial_id for t in self.ongoing_trials.values()}
        keep |= {tid for tid in self._retry_queue}
        for tid in self.trials:
            if tid in keep:
                continue
            ck = checkpoint_path(self._project_dir, tid)
            for p in (ck, ck.with_suffix(".json")):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()
