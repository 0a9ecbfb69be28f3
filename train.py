#!/usr/bin/env python
"""Train one model into a run directory (resumes when re-run with the same command).

Examples::

    python train.py --config configs/quickstart.yaml                       # FP teacher
    python train.py --config configs/quickstart.yaml --set model.w_bits=2 --set model.a_bits=2 \
        --init runs/quickstart --out runs/quickstart-w2a2                  # vanilla 2-bit student
    python train.py --config configs/quickstart.yaml --set model.w_bits=2 --set model.a_bits=2 \
        --teacher runs/quickstart --init runs/quickstart --kd ii --schedule searches/x/schedule.json
"""
from __future__ import annotations

import argparse
import sys

from rolekd_tf.cli import add_verbose_flag, run_cli


def parse_args(argv):
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.splitlines()[1])
    p.add_argument("--config", help="YAML config (see configs/); defaults apply to missing keys")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<name>)")
    p.add_argument("--init", metavar="RUN_DIR", help="initialise from that run's trainable weights")
    p.add_argument("--teacher", metavar="RUN_DIR", help="distil from this frozen teacher run")
    p.add_argument("--kd", help="KD loss: none, ii, soft, rkd, mhgd, svd, dml (sets distill.kd)")
    p.add_argument("--schedule", metavar="FILE",
                   help="augmentation schedule: our JSON, a PBA schedule text or a Ray-Tune log")
    p.add_argument("--schedule-epochs", type=int, metavar="N",
                   help="epoch count of the search that wrote a PBA/Ray-Tune log")
    p.add_argument("--overwrite", action="store_true", help="start again: replace an existing run directory made by train.py (after every check "
                        "passed; the old one is moved aside and deleted once the new run started)")
    p.add_argument("--export", action="store_true", help="export SavedModel/TFLite when done")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_verbose_flag(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rolekd_tf.config import load_config
    from rolekd_tf.errors import ConfigError

    overrides = list(args.set)
    if args.kd:
        overrides.append(f"distill.kd={args.kd}")
    if args.schedule_epochs is not None:  # 0 or a negative count is refused by the range check
        overrides.append(f"augment.schedule_epochs={args.schedule_epochs}")
    cfg = load_config(args.config, overrides)
    if cfg.distill.kd != "none" and not args.teacher:
        raise ConfigError(f"--kd {cfg.distill.kd} needs --teacher RUN_DIR (the frozen teacher run)")
    out = args.out or f"runs/{cfg.name}"
    from rolekd_tf.training import run_training

    metrics = run_training(cfg, out, init=args.init, teacher=args.teacher, schedule=args.schedule,
                           overwrite=args.overwrite, verbose=0 if args.quiet else 1,
                           config_path=args.config)
    f = metrics["final"]
    print(f"run directory: {out}")
    print(f"val accuracy: {100 * f['val_accuracy']:.2f}%  ({f['val_images']} images)"
          + (f"  holdout accuracy: {100 * f['holdout_accuracy']:.2f}%" if f.get("holdout_images") else "")
          + f"  wall time: {metrics['wall_time_s']:.0f}s")
    if metrics.get("test_examples"):
        print(f"test accuracy: {100 * metrics['test_accuracy']:.2f}%  ({metrics['test_examples']} images, "
              f"split {f.get('test_split')!r})")
    else:
        print("test accuracy: – (the dataset has no test split, or data.test_split is none)")
    if args.export:
        from rolekd_tf.export import export_run

        export_run(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
