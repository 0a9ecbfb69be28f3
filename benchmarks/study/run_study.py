#!/usr/bin/env python
"""Resumable driver of the role-wise augmentation study (issue 20, item 3); see docs/STUDY.md.

    python benchmarks/study/run_study.py [--config configs/study_cifar10_cpu.yaml]
                                         [--out runs/study_cifar10_cpu] [--pilot 3] [--dry-run]

Re-running the same command continues: every step is one of the pipeline's public commands
(``search.py``, ``train.py``) with its own resumable directory, planned by
:func:`rolekd_tf.pipeline.plan` from the same config, so the steps, directories and commands are
exactly the pipeline's. What this driver adds to ``python -m rolekd_tf.pipeline``:

* only what the comparisons need: both searches, the seed-0 stage-α teacher (every student is
  initialised from and distilled by it), and per seed the three student rows only_iikd,
  stage_beta, student_at — no teachers for the other seeds, no exports;
* seeds sized from the measured spread: after the first ``--pilot`` seeds, and after every seed
  from then on, it computes from the paired differences' standard deviation how many seeds a
  95 % t-interval half-width below 1 point needs (``analyse.seeds_needed``, the larger of the
  two comparisons) and stops when the finished seeds reach it, or at the config's last seed;
* after every seed, ``train_eval.py`` measures each finished run's clean training-set accuracy,
  ``OUT/RESULTS.md`` is rewritten by ``analyse.py`` and the sizing decision is appended to
  ``OUT/sizing.jsonl``.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import analyse  # noqa: E402

ROWS_USED = ("stage_alpha", *analyse.STUDENT_ROWS)


def study_steps(cfg, config_path: str, out: Path) -> tuple[list[dict], dict[int, list[dict]]]:
    """(shared steps: searches + seed-0 teacher, {seed: that seed's student steps}) in plan order."""
    from rolekd_tf.errors import RolekdError
    from rolekd_tf.pipeline import plan

    rows = list(cfg.pipeline.rows)
    if sorted(rows) != sorted(ROWS_USED) or len(cfg.pipeline.bits) != 1:
        raise RolekdError(f"the study config needs pipeline.rows = {list(ROWS_USED)} and one bit width; "
                          f"got rows {rows}, bits {cfg.pipeline.bits}")
    first = cfg.pipeline.seeds[0]
    shared: list[dict] = []
    per_seed: dict[int, list[dict]] = {s: [] for s in cfg.pipeline.seeds}
    for st in plan(cfg, config_path, out, []):
        if st["kind"] == "search":
            shared.append(st)
        elif st["kind"] == "train" and st["row"] == "stage_alpha":
            if st["seed"] == first:  # the students' teacher; other seeds' teachers are not compared
                shared.append(st)
        elif st["kind"] == "train":
            per_seed[st["seed"]].append(st)
        # exports and baselines: not part of the study
    return shared, per_seed


def seeds_target(out: Path, cfg, pilot: int) -> tuple[int, list]:
    """Seeds needed for both comparisons' 95 % half-width < 1 point, from the finished seeds' sd."""
    comps = analyse.paired(analyse.student_runs(out, cfg.pipeline.bits[0]))
    n_max = len(cfg.pipeline.seeds)
    if min(c.n for c in comps) < pilot:
        return n_max, comps
    need = max(analyse.seeds_needed(c.sd, n_min=pilot, n_max=n_max) for c in comps)
    return need, comps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/study_cifar10_cpu.yaml")
    ap.add_argument("--out", default="runs/study_cifar10_cpu")
    ap.add_argument("--pilot", type=int, default=3, help="seeds run before the spread is used to size the study")
    ap.add_argument("--dry-run", action="store_true", help="print the steps and what has finished, run nothing")
    args = ap.parse_args(argv)
    from rolekd_tf.config import load_config
    from rolekd_tf.errors import RolekdError
    from rolekd_tf.fileio import atomic_write_text
    from rolekd_tf.pipeline import _finished, _run

    if args.pilot < 2:
        raise RolekdError(f"--pilot={args.pilot} is invalid; allowed: >= 2 (a spread needs 2 seeds)")
    cfg = load_config(args.config, [])
    out = Path(args.out)
    shared, per_seed = study_steps(cfg, args.config, out)
    if args.dry_run:
        for st in shared + [s for v in per_seed.values() for s in v]:
            print(("done  " if _finished(st) else "todo  ") + " ".join(map(str, st["cmd"])))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".driver.lock", "a")  # held until this process exits (also when killed)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise RolekdError(f"another run_study.py is already running on {str(out)!r}; "
                          "let it finish or stop it first") from None
    journal = out / "steps.jsonl"
    log: list = []

    def run(st):
        if _finished(st):
            return
        _run(st["cmd"], log, journal)

    print(f"study {cfg.name}: shared steps {len(shared)}, up to {len(per_seed)} seeds × 3 rows → {out}/",
          flush=True)

    def clean_train_eval():  # RUN/train_eval.json for every finished run (cached): do the models fit?
        _run([sys.executable, str(Path(__file__).with_name("train_eval.py")), "--out", str(out)], log, journal)

    for st in shared:
        run(st)
    clean_train_eval()
    bits = cfg.pipeline.bits[0]
    for name, d in (("A_T", "search-teacher"), ("A_S", f"search-student-w{bits}a{bits}")):
        facts = analyse.schedule_facts(out / d / "schedule.json")
        if facts["nonzero_epochs"] == 0:  # the rows would repeat only II-KD: nothing to measure
            raise RolekdError(f"{name} in {out / d} is all zero, so its rows would repeat only II-KD; "
                              "use search.init=random or more ready points, and a new --out")
    for i, (seed, steps) in enumerate(per_seed.items()):
        if i >= args.pilot:
            need, comps = seeds_target(out, cfg, args.pilot)
            with open(out / "sizing.jsonl", "a") as f:
                f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seeds_done": i,
                                    "seeds_needed": need,
                                    "sd": {c.label: c.sd for c in comps},
                                    "half_width": {c.label: c.half_width for c in comps}}) + "\n")
            if i >= need:
                print(f"\nstudy: {i} seeds reach a 95 % half-width < 1 point in both comparisons; done",
                      flush=True)
                break
            print(f"\nstudy: {i} seeds done, the measured spread needs {need}; running seed {seed}",
                  flush=True)
        for st in steps:
            run(st)
        clean_train_eval()
        atomic_write_text(out / "RESULTS.md", analyse.report(out, cfg))
    else:
        print(f"\nstudy: all {len(per_seed)} configured seeds finished", flush=True)
    md = analyse.report(out, cfg)
    atomic_write_text(out / "RESULTS.md", md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
