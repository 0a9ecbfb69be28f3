#!/usr/bin/env python
"""PBT search overhead: wall time of a small search vs the sum of its members' pure training time.

    python benchmarks/search_overhead.py [--config configs/quickstart.yaml] [--set k=v ...]
                                         [--append benchmarks/results/search_overhead.md]

One run, one process. "Pure training" = the time spent inside ``Task.fit`` for every segment
(the members' training, incl. Keras' per-epoch validation); overhead = everything else the search
adds: model build + tracing for fresh members, checkpoint restore/save, the end-of-segment
evaluation the oracle ranks by, oracle bookkeeping and file I/O. Target: ≤ 15 %.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_SET = ["data.train_size=600", "data.val_size=200", "data.holdout_size=0", "train.batch_size=50",
               "search.population=4", "search.epochs=6", "search.ready_interval=3"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--append", default=None, help="append the Markdown snippet to this file")
    args = ap.parse_args(argv)
    from rolekd_tf.config import load_config
    from rolekd_tf.search.oracle import PBTOracle
    from rolekd_tf.search.run import search_seed, task_config
    from rolekd_tf.search.tuner import PBTTuner
    from rolekd_tf.training import Task

    sets = DEFAULT_SET + args.set
    cfg = load_config(args.config, sets)
    s = cfg.search
    task = Task(task_config(cfg), role="teacher")
    tmp = Path(tempfile.mkdtemp(prefix="pbt-bench-"))
    try:
        oracle = PBTOracle(population=s.population, ready_interval=s.ready_interval, epochs=s.epochs,
                           quantile=s.quantile, resample_p=s.resample_p, perturb_max=s.perturb_max,
                           seed=search_seed(cfg))
        tuner = PBTTuner(oracle, task_factory=lambda: task, base_seed=cfg.seed, directory=str(tmp),
                         project_name="pbt", log=False)
        t0 = time.perf_counter()
        tuner.search(verbose=0)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seg = tuner.segment_times
    tot = {k: sum(t[k] for t in seg) for k in seg[0] if k.endswith("_seconds")}
    train = tot["train_seconds"]
    other = wall - tot["trial_seconds"]
    overhead = wall - train
    rows = [
        ("search wall time", wall),
        ("pure training (Σ Task.fit)", train),
        ("model build + trace (fresh members)", tot["build_seconds"]),
        ("checkpoint restore", tot["restore_seconds"]),
        ("checkpoint save", tot["save_seconds"]),
        ("end-of-segment evaluation", tot["eval_seconds"]),
        ("oracle + Keras Tuner + file I/O", other),
    ]
    frac = overhead / train
    cmd = "python benchmarks/search_overhead.py " + " ".join(f"--set {x}" for x in args.set)
    lines = [
        f"### {_dt.date.today().isoformat()} — {platform.node()} ({os.cpu_count()} CPU cores), "
        f"TF/Keras CPU",
        "",
        f"`{cmd.strip()}` — config `{Path(args.config).name}` + "
        f"`{' '.join(sets)}` ({cfg.model.name}, {len(seg)} segments, one run)",
        "",
        "| part | seconds | % of training |",
        "|---|---:|---:|",
    ]
    lines += [f"| {k} | {v:.1f} | {100 * v / train:.1f} % |" for k, v in rows]
    lines += ["", f"**Overhead = (wall − training) / training = {100 * frac:.1f} %** "
                  f"(target ≤ 15 %: {'met' if frac <= 0.15 else 'NOT met'})", ""]
    text = "\n".join(lines)
    print(text)
    if args.append:
        p = Path(args.append)
        head = "" if p.exists() else "# PBT search overhead (benchmarks/search_overhead.py)\n\n"
        with open(p, "a", encoding="utf-8") as fh:
            fh.write(head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
