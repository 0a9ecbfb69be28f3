"""Clean training-set accuracy of finished runs: does a model fit its own training images?

    python benchmarks/study/train_eval.py --out runs/study

The training log only has Keras' running accuracy over the last epoch's *augmented* batches, a
lower bound that a strong schedule pulls far down. The study's question (issue 20, item 3: is the
regime one where the models fit their training set?) needs the accuracy of the final model, in
inference mode, on the un-augmented training images it was trained on. For every finished run
directory under ``--out`` (``metrics.json`` with ``finished``) this writes
``RUN/train_eval.json`` = ``{"train_accuracy": fraction, "images": n}`` (atomic; runs that
already have one are skipped, so the step can be re-run at any time). ``analyse.py`` reads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT = "train_eval.json"


def read_clean_train(run_dir: Path) -> float | None:
    """The clean training accuracy (%) in ``run_dir/train_eval.json``, or None if not measured yet."""
    try:
        return 100 * float(json.loads((run_dir / RESULT).read_text())["train_accuracy"])
    except (OSError, ValueError, KeyError):
        return None


def clean_train_accuracy(run_dir: Path) -> dict:
    """``{"train_accuracy", "images"}`` of ``run_dir/model.keras`` on its training split (the
    run's own ``config.yaml`` rebuilds the split: same dataset, sizes and seed), un-augmented,
    BN in inference mode. Written to ``run_dir/train_eval.json``; read from there if present."""
    f = run_dir / RESULT
    if f.is_file():
        return json.loads(f.read_text())
    import keras

    from rolekd_tf.fileio import atomic_write_json
    from rolekd_tf.training import Task, load_run_model, read_run_config

    cfg = read_run_config(run_dir)
    task = Task(cfg, role="teacher")  # data and normalisation only: no teacher is needed to evaluate
    model = load_run_model(run_dir)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    res = {"train_accuracy": task.evaluate(model, "train"), "images": int(len(task.splits.x_train))}
    atomic_write_json(f, res)
    return res


def finished_runs(out: Path) -> list[Path]:
    """Run directories under ``out`` whose ``metrics.json`` says finished and that hold a model."""
    runs = []
    for m in sorted(out.glob("*/metrics.json")):
        try:
            done = json.loads(m.read_text()).get("finished")
        except (OSError, ValueError):
            continue
        if done and (m.parent / "model.keras").is_file():
            runs.append(m.parent)
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the study's output directory")
    args = ap.parse_args(argv)
    from rolekd_tf.errors import ConfigError

    out = Path(args.out)
    if not out.is_dir():
        raise ConfigError(f"--out {args.out!r} is not a directory")
    for d in finished_runs(out):
        had = (d / RESULT).is_file()
        r = clean_train_accuracy(d)
        print(f"{d.name}: clean training accuracy {100 * r['train_accuracy']:.2f} % "
              f"({r['images']} images){' (cached)' if had else ''}", flush=True)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
