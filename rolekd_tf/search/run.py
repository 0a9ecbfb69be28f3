"""``search.py``: find an augmentation schedule with PBT (PBA's search) for a teacher or a student.

    python search.py --role teacher --config configs/quickstart.yaml
    python search.py --role student --config CFG --teacher runs/<teacher>   # stage β (A_S)

Output directory (default ``searches/<cfg.name>-<role>``)::

    config.yaml        resolved config (a re-run with another config refuses; --overwrite restarts)
    search.json        role / teacher provenance
    schedule.json      per-epoch schedule of the best final member, rebuilt from its lineage
    schedule.png       plot of that schedule
    lineage/           the best member's Ray-Tune log (pbt_policy_<id>.txt) — load_schedule reads it
    summary.json       best member, accuracies, wall time, trainer time vs overhead, the data
                       the members trained/were scored on (``data``), and the verdict on the
                       schedule: schedule_empty / schedule_unchanged / schedule_informative /
                       warning (rolekd_tf.search.informative); an uninformative schedule also
                       prints one ``warning: …`` line on stderr naming the setting to change
                       (exit status stays 0)
    tb/member_<id>/    TensorBoard scalars per member
    pbt/               Keras Tuner project: oracle.json (PBT state), trial_<id>/ (segment
                       checkpoint + segment.json), lineage/ (every member's log, lineage.jsonl),
                       members/member_<id>.json (per-member metrics), decisions.json

Data: members train on ``search.train_size`` images and are scored on ``search.val_size`` when
either is set (PBA's reduced split; null = every image left), else on ``data.train_size`` /
``data.val_size``; the holdout (``data.holdout_size``) is carved out first either way. A search
never loads the dataset's test split (``data.test_split`` is forced to ``none`` in the members'
config, :func:`task_config`): the test split is for the final trainings only.

Re-running the same command resumes (an interrupted segment is re-run from its checkpoint).

Distributed (Keras Tuner chief/worker, shared output directory): start the same command with
``KERASTUNER_TUNER_ID=chief`` once and ``KERASTUNER_TUNER_ID=tuner<k>`` per worker, all with
``KERASTUNER_ORACLE_PORT=<port>``; ``KERASTUNER_ORACLE_IP`` defaults to 127.0.0.1 (the chief binds
there, workers connect there) — set it to share the oracle across machines.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from rolekd_tf.errors import CheckpointError, ConfigError, RolekdError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="search.py",
        description="PBT augmentation-schedule search (PBA) for a teacher or a low-bit student.",
    )
    ap.add_argument("--role", required=True, choices=("teacher", "student"))
    ap.add_argument("--config", required=True, help="YAML config (see configs/)")
    ap.add_argument("--teacher", default=None, help="teacher run directory (required for --role student)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set search.population=8 (repeatable)")
    ap.add_argument("--out", default=None, help="output directory (default searches/<name>-<role>)")
    ap.add_argument("--overwrite", action="store_true",
                    help="start again: replace an existing search directory made by search.py (after every "
                         "check passed; the old one is moved aside and deleted once the new search started)")
    ap.add_argument("--rebuild-every-trial", action="store_true",
                    help="rebuild the model after clear_session() for every segment (default: reuse "
                         "one compiled model per process and swap weights/optimizer state)")
    ap.add_argument("--quiet", action="store_true", help="no per-segment progress lines")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap


def _distributed_role() -> str:
    """'single', 'chief' or 'worker' from Keras Tuner's env vars (defaults the IP to loopback)."""
    if os.environ.get("KERASTUNER_ORACLE_PORT") and "KERASTUNER_TUNER_ID" in os.environ:
        os.environ.setdefault("KERASTUNER_ORACLE_IP", "127.0.0.1")
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    if not os.environ.get("KERASTUNER_ORACLE_PORT"):
        raise ConfigError("KERASTUNER_ORACLE_IP is set but KERASTUNER_ORACLE_PORT is not; set both")
    if not os.environ.get("KERASTUNER_TUNER_ID"):
        raise ConfigError("distributed search needs KERASTUNER_TUNER_ID (chief, tuner0, tuner1, …)")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def search_seed(cfg) -> int:
    """``cfg.search.seed`` when the config has it (and it is not null), else ``cfg.seed``."""
    s = getattr(cfg.search, "seed", None)
    return int(cfg.seed if s is None else s)


def search_data(cfg) -> tuple[int | None, int | None, str]:
    """``(train_size, val_size, source)`` of the data the search's members use: the
    ``search.*`` pair when either is set (source ``"search"``), else ``data.*`` (``"data"``)."""
    s = cfg.search
    if s.train_size is not None or s.val_size is not None:
        return s.train_size, s.val_size, "search"
    return cfg.data.train_size, cfg.data.val_size, "data"


def task_config(cfg):
    """The config each member trains with: ``train.epochs`` = ``search.epochs`` (the LR/λ
    schedules span the search, as in PBA's search runs); train/val sizes from
    :func:`search_data`; ``data.test_split`` = ``none``, so no member (nor the chief) can
    ever load, train on or select by the dataset's test split."""
    train_size, val_size, _ = search_data(cfg)
    data = dataclasses.replace(cfg.data, train_size=train_size, val_size=val_size, test_split="none")
    return dataclasses.replace(cfg, data=data,
                               train=dataclasses.replace(cfg.train, epochs=cfg.search.epochs))


def _check_out_dir(out: Path, cfg_yaml: str, prov: dict, *, overwrite: bool, mode: str) -> str:
    """Read-only checks of the search directory; returns :func:`rundir.inspect`'s state
    (``"worker"`` for a worker, which neither owns nor locks the chief's directory)."""
    from rolekd_tf import rundir

    if mode == "worker":
        if overwrite:
            raise ConfigError("--overwrite is for the chief (or a single process), not a worker")
        return "worker"
    if (mode == "chief" and out.is_dir() and not (out / "config.yaml").exists()
            and {p.name for p in out.iterdir()} <= {"pbt", "tb"}):
        return "empty"  # workers started first and made their folders: still a new search
    state = rundir.inspect(out, "search", overwrite=overwrite)
    if state == "ours" and not overwrite:
        _same_search(out, cfg_yaml, prov)
    return state


def _same_search(out: Path, cfg_yaml: str, prov: dict) -> None:
    """Refuse a search directory created with another config / role / teacher."""
    from rolekd_tf.training import check_same_config

    check_same_config(out, cfg_yaml, prov, prov_file="search.json",
                      refusal="search directory {dir} was created with another configuration ({diff}); "
                              "re-run the same command to resume, use another --out, or --overwrite to start again")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rolekd_tf.config import load_config, save_config

    cfg = load_config(args.config, args.set)
    role = args.role
    if role == "student" and not args.teacher:
        raise ConfigError("--role student needs --teacher RUN_DIR (a finished teacher run directory)")
    if role == "teacher" and args.teacher:
        raise ConfigError("--teacher is only used with --role student")
    if args.teacher and not Path(args.teacher).is_dir():
        raise CheckpointError(f"teacher run directory {args.teacher!r} does not exist")
    s = cfg.search
    if s.population < 2:  # (config validation already says so; kept for configs built in code)
        raise ConfigError(f"search.population={s.population} must be >= 2")
    if s.ready_interval > s.epochs:
        raise ConfigError(f"search.ready_interval={s.ready_interval} is longer than search.epochs={s.epochs}")
    mode = _distributed_role()
    out = Path(args.out or Path("searches") / f"{cfg.name}-{role}")
    from rolekd_tf import rundir

    rundir.check_out(out, {"teacher run": args.teacher, "config file": args.config,
                           "dataset": rundir.dataset_path(cfg.data.dataset)})
    teacher_abs = str(Path(args.teacher).resolve()) if args.teacher else None
    prov = {"role": role, "teacher": teacher_abs}
    state = _check_out_dir(out, cfg.to_yaml(), prov, overwrite=args.overwrite, mode=mode)

    # Validate the task (data, teacher classes / input shape) before writing anything.
    from rolekd_tf.training import Task, read_run_config

    tcfg = task_config(cfg)
    task_holder: dict = {}

    def make_task():
        if "task" not in task_holder:
            # A student of the teacher's own network starts from the teacher's weights (stage β, as in
            # role-kd); another network (Table 4's full-precision students) starts from scratch.
            same_net = args.teacher and read_run_config(args.teacher).model.name == cfg.model.name
            task = Task(tcfg, role=role, teacher_dir=args.teacher, init_dir=args.teacher if same_net else None)
            if len(task.splits.x_test):  # pragma: no cover - task_config turns the test split off
                raise RuntimeError("the search's task holds test images (bug)")
            task_holder["task"] = task
        return task_holder["task"]

    if mode != "chief":
        make_task()
    elif args.teacher:
        make_task()  # the chief trains nothing, but a bad teacher must fail before the search starts

    if mode == "worker":
        return _search(args, cfg, out, mode, make_task)
    # Only the chief (or a single process) owns and locks the directory; workers share it.
    shared = ("pbt", "tb") if mode == "chief" else ()  # workers may start writing before the chief
    with rundir.claim(out, "search", state, overwrite=args.overwrite, shared=shared) as claim:
        if not claim.fresh:  # decided again under the lock: another process may have run meanwhile
            _same_search(out, cfg.to_yaml(), prov)
        save_config(cfg, out / "config.yaml")
        from rolekd_tf.fileio import atomic_write_json

        atomic_write_json(out / "search.json", prov)
        claim.started()
        return _search(args, cfg, out, mode, make_task)


def _search(args, cfg, out: Path, mode: str, make_task) -> int:
    """Run (or join, as a worker) the PBT search in ``out``; finalize as chief / single process."""
    role = args.role
    s = cfg.search
    from keras_tuner.src import config as kt_config

    from rolekd_tf.search.oracle import PBTOracle
    from rolekd_tf.search.tuner import PBTTuner

    # Keras Tuner prints the traceback of every failed segment to stderr (its DEBUG defaults to
    # True). The traceback is kept in pbt/trial_<id>/trial.json and PBTTuner prints one
    # "FAILED: <error>" line; the full traceback is shown with --debug, like every CLI error.
    kt_config.DEBUG = bool(args.debug)

    oracle = PBTOracle(
        population=s.population, ready_interval=s.ready_interval, epochs=s.epochs,
        quantile=s.quantile, resample_p=s.resample_p, perturb_max=s.perturb_max,
        seed=search_seed(cfg), init=getattr(s, "init", "zeros"),
    )
    tuner = PBTTuner(
        oracle, task_factory=make_task, base_seed=cfg.seed,
        reuse_model=not args.rebuild_every_trial, tb_dir=str(out / "tb"), log=not args.quiet,
        directory=str(out), project_name="pbt", overwrite=False,
    )
    if mode == "single":
        print(f"[pbt] {role} search: population {s.population}, {s.epochs} epochs, ready every "
              f"{s.ready_interval} → {out}", flush=True)
    elif mode == "chief":
        print(f"[pbt] chief: serving the PBT oracle on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}", flush=True)
    t0 = time.perf_counter()
    tuner.search(verbose=0)
    wall = time.perf_counter() - t0
    if mode == "worker":
        print(f"[pbt] worker {tuner.tuner_id}: no segments left ({len(tuner.segment_times)} run here)")
        return 0
    if mode == "chief":
        # trials were booked by the gRPC threads; make sure we read the saved state (a stalled
        # search stays stalled here: the next run of the command retries its failed segments)
        oracle.reload(resume_stalled=False)
    summary = finalize(out, cfg, oracle, wall=wall, segment_times=tuner.segment_times, role=role,
                       task=make_task() if mode != "chief" else None)
    print_summary(summary)
    return 0


def search_data_record(cfg, task=None) -> dict:
    """summary.json's ``data``: which data the members trained and were scored on."""
    train_size, val_size, source = search_data(cfg)
    rec = {"dataset": cfg.data.dataset, "from": f"{source}.train_size/{source}.val_size",
           "train_size": train_size, "val_size": val_size, "holdout_size": cfg.data.holdout_size,
           "seed": cfg.seed, "test_split": "none"}  # searches never read the test split
    if task is not None:  # the chief of a distributed search builds no task
        rec["train_images"] = int(len(task.splits.x_train))
        rec["val_images"] = int(len(task.splits.x_val))
    return rec


def finalize(out: Path, cfg, oracle, *, wall: float, segment_times: list[dict], role: str,
             task=None) -> dict:
    """Write schedule.json / schedule.png / lineage / summary.json for the best final member."""
    from rolekd_tf.fileio import clean_stale_temporaries

    # A run killed while writing its final files leaves .tmp-* beside them; never ship those.
    for d in (out, out / "lineage"):
        clean_stale_temporaries(d)
    from rolekd_tf.fileio import atomic_write_json
    from rolekd_tf.search import lineage as lin

    if oracle.stalled:
        raise RolekdError(
            f"the search in {str(out)!r} stopped at generation {oracle.pbt_state['generation']}: "
            f"{oracle.stall_message()}; the tracebacks are in {str(out / 'pbt')}/trial_*/trial.json. "
            "Fix the cause and re-run the same command: it retries the failed segments"
        )
    if not oracle.finished:
        raise RolekdError(
            f"the search in {str(out)!r} stopped before every member reached epoch {cfg.search.epochs} "
            "(failed segments?); see pbt/trial_*/trial.json, then re-run the same command"
        )
    E = cfg.search.epochs
    best = oracle.best_member()
    st = oracle.pbt_state
    m = st["members"][best]
    if m["score"] is None or m["failed"]:  # pragma: no cover - the oracle stalls instead
        raise RolekdError(f"the search in {str(out)!r} has no member with a completed last segment")
    rows = oracle.member_log(best)
    start = oracle.start_policy(best)
    # A member that never exploited trained with its start policy throughout (zeros under PBA's
    # init; its random draw under search.init=random).
    sched = lin.schedule_for_rows(rows, E, default_policy=start)
    ldir = out / "lineage"
    ldir.mkdir(parents=True, exist_ok=True)
    log_file = None
    if rows:
        log_file = lin.log_path(ldir, best)
        lin.write_log(rows, log_file)
        from rolekd_tf.augment.policy import load_schedule

        again = load_schedule(log_file, epochs=E)
        if again.as_array().tolist() != sched.as_array().tolist():  # pragma: no cover - invariant
            raise RuntimeError("schedule.json and the lineage log disagree (bug)")
    sched.save(out / "schedule.json")
    from rolekd_tf.augment.plot import plot_schedule

    plot_schedule(sched, out / "schedule.png")
    all_segments = [h for mm in st["members"].values() for h in mm["history"] if h.get("status") == "COMPLETED"]
    trainer_all = sum(float(h.get("train_seconds", 0.0)) for h in all_segments)
    trainer_run = sum(float(t["train_seconds"]) for t in segment_times)
    summary = {
        "role": role,
        "best_member": best,
        "best_val_accuracy": m["score"],
        "best_lineage_log": str(log_file) if log_file else None,
        "exploits_in_lineage": len(rows),
        "segment_lengths": list(sched.segment_lengths),
        "population": cfg.search.population,
        "epochs": E,
        "ready_interval": cfg.search.ready_interval,
        "segments_completed": len(all_segments),
        "final_scores": {k: v["score"] for k, v in st["members"].items()},
        "search_wall_seconds_this_run": wall,
        "segments_this_run": len(segment_times),
        "trainer_seconds_this_run": trainer_run,
        "overhead_seconds_this_run": wall - trainer_run if segment_times else None,
        "overhead_fraction_this_run": (wall - trainer_run) / trainer_run if trainer_run > 0 else None,
        "trainer_seconds_all_segments": trainer_all,
        "data": search_data_record(cfg, task),
    }
    from rolekd_tf.search.informative import check_schedule

    verdict = check_schedule(sched.as_array(), start, where=str(out), best_member=best, exploits=len(rows),
                             init=oracle.init, ready_interval=cfg.search.ready_interval,
                             population=cfg.search.population)
    summary.update(init=oracle.init, schedule_empty=verdict.empty, schedule_unchanged=verdict.unchanged,
                   schedule_informative=verdict.informative, warning=verdict.warning or None)
    atomic_write_json(out / "summary.json", summary)
    if verdict.warning:
        # Not an error: the search did what PBA does; the schedule just carries no information.
        print(f"warning: {verdict.warning}", file=sys.stderr, flush=True)
    return summary


def _data_line(d: dict) -> str:
    n = lambda k, size: d[k] if k in d else ("rest" if d.get(size) is None else d.get(size))  # noqa: E731
    return f"{n('train_images', 'train_size')} / {n('val_images', 'val_size')} images ({d.get('from', '?')})"


def print_summary(s: dict) -> None:
    def f(v, fmt="{:.1f}"):
        return "—" if v is None else fmt.format(v)

    rows = [
        ("best member", s["best_member"]),
        ("best val accuracy", f(s["best_val_accuracy"], "{:.4f}")),
        ("member data (train / val)", _data_line(s.get("data") or {})),
        ("exploits in its lineage", s["exploits_in_lineage"]),
        ("schedule segments", " ".join(map(str, s["segment_lengths"]))),
        ("schedule", "all zero (see the warning)" if s.get("schedule_empty") else
         "start policy unchanged (see the warning)" if s.get("schedule_unchanged") else
         f"learned (search.init={s.get('init', 'zeros')})"),
        ("segments run (this run / all)", f"{s['segments_this_run']} / {s['segments_completed']}"),
        ("search wall time (s)", f(s["search_wall_seconds_this_run"])),
        ("trainer time (s)", f(s["trainer_seconds_this_run"])),
        ("overhead (s, fraction)", f"{f(s['overhead_seconds_this_run'])} "
                                   f"({f(s['overhead_fraction_this_run'], '{:.1%}')})"),
    ]
    w = max(len(k) for k, _ in rows)
    print("\nPBT search summary")
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    print("\n  member  val_accuracy")
    for k, v in sorted(s["final_scores"].items(), key=lambda kv: -(kv[1] or -1)):
        print(f"  {k:>6}  {f(v, '{:.4f}')}")
    sys.stdout.flush()
