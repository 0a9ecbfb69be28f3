#!/usr/bin/env python
"""Read the study's runs and write paired differences with 95 % t-intervals and the verdict.

    python benchmarks/study/analyse.py [--out runs/study_cifar10_cpu] [--config configs/study_cifar10_cpu.yaml]
                                       [--md benchmarks/study/RESULTS.md]

Reads only what the runs wrote (``metrics.json`` of every finished student run, the two searches'
``schedule.json`` / ``summary.json``), never the driver's memory, so it can be run at any time,
also while the study is still going. Comparisons (holdout accuracy, points, paired by seed: the
same seed gives the same data order and the same teacher):

* stage β (II-KD + A_S) − only II-KD            — the paper's "stage β > only II-KD"
* stage β (II-KD + A_S) − II-KD + A_T            — the paper's "A_S > A_T for the student"
* stage-α teacher − vanilla teacher              — does A_T help the teacher (stage α)? Read from
  the pipeline's ``teacher-alpha-sN`` / ``teacher-vanilla-sN`` runs where both exist (the driver
  trains only the seed-0 stage-α teacher; the pairs are the pipeline's own commands, docs/STUDY.md)

95 % interval: mean ± t(0.975, n−1)·sd/√n over the n seeds that finished all three rows.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from train_eval import read_clean_train  # noqa: E402  (same directory: the train_eval.json format's home)

#: (label, row a, row b): the difference a − b is reported
COMPARISONS = (
    ("stage β − only II-KD", "stage_beta", "only_iikd"),
    ("A_S − A_T (student, both with II-KD)", "stage_beta", "student_at"),
)
STUDENT_ROWS = ("only_iikd", "stage_beta", "student_at")
#: the pipeline's teacher directories teacher-{row}-s{seed}: stage α (A_T) and vanilla_fp (baseline)
TEACHER_ROWS = ("alpha", "vanilla")
TEACHER_COMPARISON = ("stage-α teacher − vanilla teacher (A_T for the teacher)", "alpha", "vanilla")
TARGET_HALF_WIDTH = 1.0  #: points: the resolution the study is sized for


@dataclass
class Paired:
    """One comparison over the seeds that finished both rows (values in points)."""

    label: str
    seeds: list[int]
    diffs: list[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.diffs) if self.diffs else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.diffs) if self.n > 1 else math.nan

    @property
    def half_width(self) -> float:
        """95 % t-interval half-width in points (nan below 2 seeds)."""
        return t975(self.n - 1) * self.sd / math.sqrt(self.n) if self.n > 1 else math.nan

    def verdict(self) -> str:
        """Plain reading of the interval against 0 and against the ±1-point resolution."""
        if self.n < 2:
            return "not enough seeds yet"
        lo, hi = self.mean - self.half_width, self.mean + self.half_width
        if lo > 0:
            return "positive (the 95 % interval excludes 0)"
        if hi < 0:
            return "negative (the 95 % interval excludes 0)"
        if -TARGET_HALF_WIDTH < lo and hi < TARGET_HALF_WIDTH:
            return "no effect of 1 point or more (the interval lies inside ±1 point)"
        return "not resolved (the interval contains 0 and reaches beyond ±1 point)"


def t975(df: int) -> float:
    """Two-sided 95 % Student-t quantile for ``df`` ≥ 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def seeds_needed(sd: float, target: float = TARGET_HALF_WIDTH, n_min: int = 2, n_max: int = 1000) -> int:
    """Smallest n ≥ n_min with t(0.975, n−1)·sd/√n < target (``n_max`` if none up to it)."""
    for n in range(max(2, n_min), n_max + 1):
        if t975(n - 1) * sd / math.sqrt(n) < target:
            return n
    return n_max


def finished_runs(out: Path, prefix: str, rows) -> dict[str, dict[int, dict]]:
    """``{row: {seed: metrics.json}}`` for every finished run ``OUT/{prefix}{row}-s{seed}``."""
    runs: dict[str, dict[int, dict]] = {r: {} for r in rows}
    for row in rows:
        for d in sorted(out.glob(f"{prefix}{row}-s*")):
            try:
                m = json.loads((d / "metrics.json").read_text())
                seed = int(d.name.rsplit("-s", 1)[1])
            except (OSError, ValueError):
                continue
            if m.get("finished"):
                runs[row][seed] = m
    return runs


def student_runs(out: Path, bits: int) -> dict[str, dict[int, dict]]:
    """``{row: {seed: metrics.json}}`` for every finished student run under ``out``."""
    return finished_runs(out, f"w{bits}a{bits}-", STUDENT_ROWS)


def teacher_runs(out: Path) -> dict[str, dict[int, dict]]:
    """``{"alpha"|"vanilla": {seed: metrics.json}}`` for the finished teachers under ``out``."""
    return finished_runs(out, "teacher-", TEACHER_ROWS)


def paired(runs: dict[str, dict[int, dict]], comparisons=COMPARISONS) -> list[Paired]:
    res = []
    for label, a, b in comparisons:
        seeds = sorted(set(runs[a]) & set(runs[b]))
        diffs = [100 * (runs[a][s]["final"]["holdout_accuracy"] - runs[b][s]["final"]["holdout_accuracy"])
                 for s in seeds]
        res.append(Paired(label, seeds, diffs))
    return res


def fit_line(m: dict) -> tuple[float, float, float] | None:
    """(last-epoch training accuracy under augmentation, val accuracy, holdout accuracy), in %."""
    h = m.get("history", {})
    if not h.get("accuracy") or not h.get("val_accuracy"):
        return None
    return 100 * h["accuracy"][-1], 100 * h["val_accuracy"][-1], 100 * m["final"]["holdout_accuracy"]


def schedule_facts(path: Path) -> dict | None:
    """Non-zero epochs, segment lengths and per-op mean probability of a search's schedule."""
    if not path.exists():
        return None
    from rolekd_tf.augment.policy import NUM_OPS, OP_ORDER, load_schedule, slot_probabilities

    s = load_schedule(path)
    a = s.as_array()  # [E, 60]
    probs = slot_probabilities(a)  # [E, 30]: copy A ops 0..14 then copy B ops 0..14
    per_op = (probs[:, :NUM_OPS] + probs[:, NUM_OPS:]) / 2  # mean over the two copies
    return {"array": a, "epochs": s.epochs, "nonzero_epochs": int((a.sum(axis=1) > 0).sum()),
            "segments": s.segment_lengths,
            "op_prob": {op: float(per_op[:, k].mean()) for k, op in enumerate(OP_ORDER)}}


def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or x != x else f"{x:+.{nd}f}"


def report(out: Path, cfg) -> str:
    """The Markdown of RESULTS.md for the runs under ``out``."""
    bits = cfg.pipeline.bits[0]
    runs = student_runs(out, bits)
    comps = paired(runs)
    lines = [f"# Study `{cfg.name}`: measured results", "",
             f"Runs: the driver's `--out` directory (`{out.name}/`; no machine path here); data `{cfg.data.dataset.split('/')[-1]}` "
             f"(train/val/holdout = {cfg.data.train_size}/{cfg.data.val_size}/{cfg.data.holdout_size}), "
             f"model `{cfg.model.name}`, {cfg.train.epochs} epochs per training, w{bits}a{bits} students "
             f"initialised from and distilled (II-KD) by the seed-{cfg.pipeline.seeds[0]} stage-α teacher. "
             f"Generated by `benchmarks/study/analyse.py` from the runs' own files.", ""]
    done = {r: sorted(v) for r, v in runs.items()}
    lines += ["Finished student runs (seeds): " + "; ".join(f"{r}: {done[r] or '–'}" for r in STUDENT_ROWS), ""]

    lines += ["## Paired differences (holdout accuracy, points; 95 % t-interval)", "",
              "| comparison | seeds | per-seed differences | mean | sd | 95 % CI | verdict |",
              "|---|---|---|---|---|---|---|"]
    truns = teacher_runs(out)
    (tc,) = paired(truns, (TEACHER_COMPARISON,))
    for c in comps + ([tc] if tc.n else []):
        ci = ("–" if c.n < 2 else f"[{c.mean - c.half_width:+.2f}, {c.mean + c.half_width:+.2f}]")
        lines.append(f"| {c.label} | {c.n} | {', '.join(f'{d:+.2f}' for d in c.diffs) or '–'} | "
                     f"{_fmt(c.mean)} | {'–' if c.n < 2 else f'{c.sd:.2f}'} | {ci} | {c.verdict()} |")
    lines.append("")
    for c in comps:
        if c.n >= 2:
            lines.append(f"- {c.label}: with sd {c.sd:.2f} points, a 95 % half-width below "
                         f"{TARGET_HALF_WIDTH:g} point needs {seeds_needed(c.sd)} seeds "
                         f"(now {c.n}: ±{c.half_width:.2f}).")
    lines.append("")

    lines += ["## Per-row accuracy (mean ± sd over finished seeds, %)", "",
              "| row | seeds | holdout | val | last-epoch train acc. (augmented batches) | clean train acc. | "
              "clean train − val |",
              "|---|---|---|---|---|---|---|"]
    rows = [(f"teacher {r}", {s: (m, out / f"teacher-{r}-s{s}") for s, m in truns[r].items()})
            for r in TEACHER_ROWS if truns[r]]
    rows += [(f"w{bits}a{bits} {r}", {s: (m, out / f"w{bits}a{bits}-{r}-s{s}") for s, m in runs[r].items()})
             for r in STUDENT_ROWS]
    for name, ms in rows:
        fits = [(f, read_clean_train(d)) for f, d in ((fit_line(m), d) for m, d in ms.values()) if f]
        if not fits:
            lines.append(f"| {name} | 0 | – | – | – | – | – |")
            continue

        def ms_(xs):
            return f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.2f}"

        clean = [(c, f[1]) for f, c in fits if c is not None]
        cl = (f"{ms_([c for c, _ in clean])} ({len(clean)})" if clean else "–")
        gap = f"{statistics.fmean(c - v for c, v in clean):+.2f}" if clean else "–"
        lines.append(f"| {name} | {len(fits)} | {ms_([f[2] for f, _ in fits])} | {ms_([f[1] for f, _ in fits])} | "
                     f"{ms_([f[0] for f, _ in fits])} | {cl} | {gap} |")
    lines += ["", "Last-epoch training accuracy is Keras' running accuracy over the last epoch's augmented "
              "batches (a lower bound). Clean training accuracy: the final model on its own un-augmented "
              "training images, inference-mode BN (`benchmarks/study/train_eval.py`; in brackets, how many "
              "of the seeds have it); a positive clean train − val gap means the model fits its training "
              "images better than unseen ones.", ""]

    lines += ["## Schedules of the two roles (paper Fig. 3 vs Fig. 4)", ""]
    at = schedule_facts(out / "search-teacher" / "schedule.json")
    as_ = schedule_facts(out / f"search-student-w{bits}a{bits}" / "schedule.json")
    for name, f, d in (("A_T (teacher, stage α)", at, "search-teacher"),
                       ("A_S (student, stage β)", as_, f"search-student-w{bits}a{bits}")):
        if f is None:
            lines.append(f"- {name}: search not finished")
            continue
        summ = {}
        try:
            summ = json.loads((out / d / "summary.json").read_text())
        except (OSError, ValueError):
            pass
        top = sorted(f["op_prob"].items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"- {name}: {f['nonzero_epochs']}/{f['epochs']} epochs with a non-zero policy, "
                     f"segments {f['segments']}, exploits in the winning lineage "
                     f"{summ.get('exploits_in_lineage', '–')}, best search val "
                     f"{100 * summ['best_val_accuracy']:.2f} %" if "best_val_accuracy" in summ else
                     f"- {name}: {f['nonzero_epochs']}/{f['epochs']} epochs with a non-zero policy")
        lines.append(f"  most applied ops (mean probability over epochs): "
                     + ", ".join(f"{op} {p:.2f}" for op, p in top) + f"; plot `{out.name}/{d}/schedule.png`")
    if at is not None and as_ is not None:
        import numpy as np

        same_len = at["array"].shape == as_["array"].shape
        differ = (bool(np.any(at["array"] != as_["array"])) if same_len else True)
        frac = float(np.mean(at["array"] != as_["array"])) if same_len else float("nan")
        lines.append(f"- The two schedules {'differ' if differ else 'are identical'}"
                     + (f" ({100 * frac:.1f} % of the epoch × 60 integers differ)" if same_len else "") + ".")
    lines.append("")

    lines += ["## Verdict on the paper's claims", ""]
    c1, c2 = comps
    lines.append(f"- Stage β > only II-KD: {c1.verdict()}"
                 + (f" — mean {c1.mean:+.2f} points, 95 % CI ±{c1.half_width:.2f}, {c1.n} seeds." if c1.n > 1 else "."))
    lines.append(f"- A_S > A_T for the student: {c2.verdict()}"
                 + (f" — mean {c2.mean:+.2f} points, 95 % CI ±{c2.half_width:.2f}, {c2.n} seeds." if c2.n > 1 else "."))
    if tc.n:
        lines.append(f"- Stage α helps the teacher (A_T vs baseline augmentation; not one of the issue's "
                     f"three claims): {tc.verdict()}"
                     + (f" — mean {tc.mean:+.2f} points, 95 % CI ±{tc.half_width:.2f}, {tc.n} seeds." if tc.n > 1
                        else f" — {tc.diffs[0]:+.2f} points, 1 seed."))
    if at is not None and as_ is not None:
        lines.append("- The two roles' schedules differ: "
                     + ("yes." if differ else "no (identical schedules)."))
    else:
        lines.append("- The two roles' schedules differ: searches not finished.")
    journal = out / "steps.jsonl"
    if journal.exists():
        secs = 0.0
        for line in journal.read_text().splitlines():
            try:
                secs += float(json.loads(line)["seconds"])
            except (ValueError, KeyError):
                continue
        lines += ["", f"Step wall time summed over all invocations so far: {secs:.0f} s "
                      f"({secs / 3600:.1f} h; shared machine, `nice -n 19`)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/study_cifar10_cpu", help="the study's output directory")
    ap.add_argument("--config", default=str(ROOT / "configs" / "study_cifar10_cpu.yaml"))
    ap.add_argument("--md", default=None, help="write the Markdown here (default: OUT/RESULTS.md)")
    args = ap.parse_args(argv)
    from rolekd_tf.config import load_config
    from rolekd_tf.fileio import atomic_write_text

    cfg = load_config(args.config, [])
    out = Path(args.out)
    md = report(out, cfg)
    atomic_write_text(Path(args.md) if args.md else out / "RESULTS.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
