"""The whole method end to end: stage α search → teacher → stage β search → students → export.

``python -m rolekd_tf.pipeline --config CFG [--out DIR] [--set k=v …]`` runs the rows of the
paper's Table 2/3 named in ``cfg.pipeline.rows`` by calling the public commands (``search.py``,
``train.py``, ``python -m rolekd_tf.export``) in subprocesses, printing each so users can re-run any
step alone. Every step writes its own directory under ``DIR`` and resumes when re-run, so the
driver itself resumes after an interruption. The summary table is read back from each run's
``metrics.json`` (never from the driver's memory) and written to ``DIR/results.md`` /
``results.json``.

Rows (``pipeline.rows``):
  vanilla_fp      teacher, baseline augmentation only
  stage_alpha     teacher re-trained with A_T (stage α search on the reduced split)
  vanilla_lowbit  k-bit student initialised from the teacher, no KD, baseline augmentation
  only_iikd       k-bit student distilled with II-KD, baseline augmentation
  stage_beta      k-bit student distilled with II-KD and A_S (stage β search)
  student_at      k-bit student distilled with II-KD and the teacher's A_T (Table 3)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rolekd_tf.errors import RolekdError

ROW_TITLES = {
    "vanilla_fp": "Vanilla FP32 teacher",
    "stage_alpha": "Stage α teacher (A_T) FP32",
    "vanilla_lowbit": "Vanilla {b}-bit",
    "only_iikd": "Only II-KD {b}-bit",
    "stage_beta": "Stage β {b}-bit (II-KD + A_S)",
    "student_at": "{b}-bit II-KD + A_T (Table 3)",
}


class StepFailed(RolekdError):
    pass


def _run(cmd: list[str], log: list) -> float:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd)
    dt = time.time() - t0
    log.append({"cmd": cmd, "seconds": round(dt, 1), "rc": rc})
    if rc != 0:
        raise StepFailed(f"step failed with exit code {rc}: {' '.join(cmd)} (re-run the pipeline to resume)")
    print(f"  ({dt:.0f}s)", flush=True)
    return dt


def _final(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    if not m.get("finished"):
        raise StepFailed(f"{run} has no finished metrics.json")
    f = dict(m["final"])
    f["wall_time_s"] = m.get("wall_time_s")
    f["model_bytes"] = (run / "model.keras").stat().st_size
    return f


def plan(cfg, config_path: str, out: Path, sets: list[str]) -> list[dict]:
    """The ordered steps (dicts with ``kind``, ``row``, ``bits``, ``seed``, ``cmd``, ``dir``)."""
    py = sys.executable
    base = ["--config", config_path] + [a for s in sets for a in ("--set", s)]
    p = cfg.pipeline
    rows = list(p.rows)
    student_rows = [r for r in rows if r in ("vanilla_lowbit", "only_iikd", "stage_beta", "student_at")]
    need_at = "stage_alpha" in rows or "student_at" in rows
    steps: list[dict] = []
    s_teacher = out / "search-teacher"
    if need_at:
        steps.append({"kind": "search", "dir": s_teacher,
                      "cmd": [py, "search.py", "--role", "teacher", *base, "--out", str(s_teacher), "--quiet"]})
    at = s_teacher / "schedule.json"
    seeds = list(p.seeds)
    if "vanilla_fp" in rows:
        for sd in seeds:
            d = out / f"teacher-vanilla-s{sd}"
            steps.append({"kind": "train", "row": "vanilla_fp", "bits": 32, "seed": sd, "dir": d,
                          "cmd": [py, "train.py", *base, "--set", f"seed={sd}", "--set", "distill.kd=none",
                                  "--out", str(d), "--quiet"]})
    if "stage_alpha" in rows:
        for sd in seeds:
            d = out / f"teacher-alpha-s{sd}"
            steps.append({"kind": "train", "row": "stage_alpha", "bits": 32, "seed": sd, "dir": d,
                          "cmd": [py, "train.py", *base, "--set", f"seed={sd}", "--set", "distill.kd=none",
                                  "--schedule", str(at), "--out", str(d), "--quiet"]})
    teacher = out / (f"teacher-alpha-s{seeds[0]}" if "stage_alpha" in rows else f"teacher-vanilla-s{seeds[0]}")
    if student_rows and "stage_alpha" not in rows and "vanilla_fp" not in rows:
        raise RolekdError("pipeline.rows has student rows but no teacher row (vanilla_fp or stage_alpha)")
    stu = [a for s in p.student_set for a in ("--set", s)]
    for b in p.bits:
        bits = ["--set", f"model.w_bits={b}", "--set", f"model.a_bits={b}"]
        s_student = out / f"search-student-w{b}a{b}"
        if "stage_beta" in rows:
            steps.append({"kind": "search", "dir": s_student,
                          "cmd": [py, "search.py", "--role", "student", *base, *stu, *bits, "--set", "distill.kd=ii",
                                  "--teacher", str(teacher), "--out", str(s_student), "--quiet"]})
        for row in student_rows:
            kd = "none" if row == "vanilla_lowbit" else "ii"
            sched = {"stage_beta": s_student / "schedule.json", "student_at": at}.get(row)
            for sd in seeds:
                d = out / f"w{b}a{b}-{row}-s{sd}"
                cmd = [py, "train.py", *base, *stu, *bits, "--set", f"seed={sd}", "--init", str(teacher)]
                if kd != "none":
                    cmd += ["--teacher", str(teacher), "--kd", kd]
                else:
                    cmd += ["--set", "distill.kd=none"]
                if sched is not None:
                    cmd += ["--schedule", str(sched)]
                steps.append({"kind": "train", "row": row, "bits": b, "seed": sd, "dir": d,
                              "cmd": cmd + ["--out", str(d), "--quiet"]})
    if p.export:
        final_row = next((r for r in ("stage_beta", "only_iikd", "vanilla_lowbit") if r in rows), None)
        if final_row:
            for b in p.bits:
                d = out / f"w{b}a{b}-{final_row}-s{seeds[0]}"
                steps.append({"kind": "export", "dir": d, "cmd": [py, "-m", "rolekd_tf.export", str(d)]})
        steps.append({"kind": "export", "dir": teacher, "cmd": [py, "-m", "rolekd_tf.export", str(teacher)]})
    return steps


def summarise(cfg, steps: list[dict]) -> tuple[list[dict], str]:
    """Rows of mean ± std accuracy over seeds, read from each run's metrics.json."""
    groups: dict[tuple, list[dict]] = {}
    for st in steps:
        if st["kind"] == "train":
            groups.setdefault((st["row"], st["bits"]), []).append(_final(st["dir"]) | {"seed": st["seed"]})
    order = {r: i for i, r in enumerate(ROW_TITLES)}
    table = []
    for (row, bits), runs in sorted(groups.items(), key=lambda kv: (kv[0][1] != 32, kv[0][1], order[kv[0][0]])):
        def stat(key):
            xs = [100 * r[key] for r in runs if r.get(key) is not None and r[key] == r[key]]
            if not xs:
                return None, None
            return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

        vm, vs = stat("val_accuracy")
        hm, hs = stat("holdout_accuracy")
        table.append({"row": row, "title": ROW_TITLES[row].format(b=bits), "bits": bits, "seeds": len(runs),
                      "val_mean": vm, "val_std": vs, "holdout_mean": hm, "holdout_std": hs,
                      "model_bytes": runs[0]["model_bytes"], "params": runs[0]["params"],
                      "wall_time_s": sum(r["wall_time_s"] or 0 for r in runs),
                      "runs": [str(st["dir"]) for st in steps
                               if st["kind"] == "train" and st["row"] == row and st["bits"] == bits]})
    fmt = lambda m, s: "–" if m is None else f"{m:.2f} ± {s:.2f}"  # noqa: E731
    lines = ["| row | bits (w/a) | seeds | holdout acc. % (mean ± std) | val acc. % | params | model.keras |",
             "|---|---|---|---|---|---|---|"]
    for t in table:
        bits = "32/32" if t["bits"] == 32 else f"{t['bits']}/{t['bits']}"
        lines.append(f"| {t['title']} | {bits} | {t['seeds']} | {fmt(t['holdout_mean'], t['holdout_std'])} | "
                     f"{fmt(t['val_mean'], t['val_std'])} | {t['params']:,} | {t['model_bytes'] / 1e6:.2f} MB |")
    return table, "\n".join(lines)


def run_pipeline(config_path: str, out: str | None = None, sets: list[str] | None = None) -> dict:
    from rolekd_tf.config import load_config
    from rolekd_tf.fileio import atomic_write_json, atomic_write_text

    sets = list(sets or [])
    cfg = load_config(config_path, sets)
    out_dir = Path(out or f"runs/{cfg.name}-pipeline")
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, config_path, out_dir, sets)
    print(f"pipeline {cfg.name}: {len(steps)} steps into {out_dir}/ (re-run the same command to resume)")
    t0 = time.time()
    log: list = []
    for st in steps:
        _run(st["cmd"], log)
    table, md = summarise(cfg, steps)
    wall = time.time() - t0
    plots = sorted(str(p) for p in out_dir.glob("search-*/schedule.png"))
    tflite = sorted(str(p) for p in out_dir.glob("*/export/*.tflite"))
    header = (f"Pipeline `{cfg.name}` — data `{cfg.data.dataset}`, model `{cfg.model.name}`, "
              f"{cfg.train.epochs} epochs, train/val/holdout = {cfg.data.train_size}/{cfg.data.val_size}/"
              f"{cfg.data.holdout_size}; this invocation's wall time {wall:.0f}s "
              f"(steps already finished are skipped on re-runs).")
    atomic_write_text(out_dir / "results.md", header + "\n\n" + md + "\n")
    res = {"config": config_path, "sets": sets, "table": table, "steps": log, "wall_time_s": wall,
           "schedule_plots": plots, "tflite": tflite}
    atomic_write_json(out_dir / "results.json", res)
    print("\n" + md)
    print(f"\nschedule plots: {', '.join(plots) or '–'}")
    print(f"TFLite files:   {', '.join(tflite) or '–'}")
    print(f"results: {out_dir}/results.md, {out_dir}/results.json  (total {wall:.0f}s)")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rolekd_tf.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    run_pipeline(args.config, args.out, args.set)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
