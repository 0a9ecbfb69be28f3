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

With ``pipeline.tfmot: true`` one more row runs tfmot's 8-bit QAT baseline
(``benchmarks/tfmot_baseline.py``, its own process) on the same data, recipe and epoch budget.
``--report`` prints the table of whatever has finished (e.g. while a long run is still going).
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


def _run(cmd: list[str], log: list, journal: Path | None = None) -> float:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd)
    dt = time.time() - t0
    entry = {"cmd": cmd, "seconds": round(dt, 1), "rc": rc,
             "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    log.append(entry)
    if journal is not None:  # append-only record across invocations: total compute of a resumed run
        with open(journal, "a") as f:
            f.write(json.dumps(entry) + "\n")
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


def _finished(st: dict) -> bool:
    """True when a step's own output says it is complete (used to skip work and for --report)."""
    d = Path(st["dir"])
    try:
        if st["kind"] == "train":
            return bool(json.loads((d / "metrics.json").read_text()).get("finished"))
        if st["kind"] == "search":
            return (d / "schedule.json").exists()
        if st["kind"] == "baseline":
            return "accuracy" in json.loads((d / "results.json").read_text())
        if st["kind"] == "export":
            return (d / "export" / "report.json").exists()
    except (OSError, ValueError):
        return False
    return False


_ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> str:
    """``train.py`` as users type it from the repository root; an absolute path from elsewhere."""
    return name if Path(name).resolve() == _ROOT / name else str(_ROOT / name)


def plan(cfg, config_path: str, out: Path, sets: list[str]) -> list[dict]:
    """The ordered steps (dicts with ``kind``, ``row``, ``bits``, ``seed``, ``cmd``, ``dir``).

    Seed-major order: the searches, every row of the first seed, the exports and the baseline
    come first, then the other seeds, so an interrupted run already holds one complete table
    (``--report`` prints it).
    """
    py = sys.executable
    base = ["--config", config_path] + [a for s in sets for a in ("--set", s)]
    p = cfg.pipeline
    rows = list(p.rows)
    student_rows = [r for r in rows if r in ("vanilla_lowbit", "only_iikd", "stage_beta", "student_at")]
    need_at = "stage_alpha" in rows or "student_at" in rows
    if student_rows and "stage_alpha" not in rows and "vanilla_fp" not in rows:
        raise RolekdError("pipeline.rows has student rows but no teacher row (vanilla_fp or stage_alpha)")
    steps: list[dict] = []
    s_teacher = out / "search-teacher"
    if need_at:
        steps.append({"kind": "search", "dir": s_teacher,
                      "cmd": [py, _script("search.py"), "--role", "teacher", *base, "--out", str(s_teacher), "--quiet"]})
    at = s_teacher / "schedule.json"
    seeds = list(p.seeds)
    teacher = out / (f"teacher-alpha-s{seeds[0]}" if "stage_alpha" in rows else f"teacher-vanilla-s{seeds[0]}")
    stu = [a for s in p.student_set for a in ("--set", s)]
    first_seed_end = None
    for i, sd in enumerate(seeds):
        if i == 1:
            first_seed_end = len(steps)
        for row, name in (("vanilla_fp", "vanilla"), ("stage_alpha", "alpha")):
            if row not in rows:
                continue
            d = out / f"teacher-{name}-s{sd}"
            cmd = [py, _script("train.py"), *base, "--set", f"seed={sd}", "--set", "distill.kd=none"]
            if row == "stage_alpha":
                cmd += ["--schedule", str(at)]
            steps.append({"kind": "train", "row": row, "bits": 32, "seed": sd, "dir": d,
                          "cmd": cmd + ["--out", str(d), "--quiet"]})
        for b in p.bits:
            bits = ["--set", f"model.w_bits={b}", "--set", f"model.a_bits={b}"]
            s_student = out / f"search-student-w{b}a{b}"
            if i == 0 and "stage_beta" in rows:  # needs the teacher of the first seed only
                steps.append({"kind": "search", "dir": s_student,
                              "cmd": [py, _script("search.py"), "--role", "student", *base, *stu, *bits,
                                      "--set", "distill.kd=ii", "--teacher", str(teacher),
                                      "--out", str(s_student), "--quiet"]})
            for row in student_rows:
                kd = "none" if row == "vanilla_lowbit" else "ii"
                sched = {"stage_beta": s_student / "schedule.json", "student_at": at}.get(row)
                d = out / f"w{b}a{b}-{row}-s{sd}"
                cmd = [py, _script("train.py"), *base, *stu, *bits, "--set", f"seed={sd}", "--init", str(teacher)]
                if kd != "none":
                    cmd += ["--teacher", str(teacher), "--kd", kd]
                else:
                    cmd += ["--set", "distill.kd=none"]
                if sched is not None:
                    cmd += ["--schedule", str(sched)]
                steps.append({"kind": "train", "row": row, "bits": b, "seed": sd, "dir": d,
                              "cmd": cmd + ["--out", str(d), "--quiet"]})
    tail: list[dict] = []
    if p.export:
        final_row = next((r for r in ("stage_beta", "only_iikd", "vanilla_lowbit") if r in rows), None)
        if final_row:
            for b in p.bits:
                d = out / f"w{b}a{b}-{final_row}-s{seeds[0]}"
                tail.append({"kind": "export", "dir": d, "cmd": [py, "-m", "rolekd_tf.export", str(d)]})
        tail.append({"kind": "export", "dir": teacher, "cmd": [py, "-m", "rolekd_tf.export", str(teacher)]})
    if p.tfmot:
        d = out / "tfmot-qat8"
        script = _script("benchmarks/tfmot_baseline.py")
        # Same data, recipe and seed as the teacher rows; E FP + E QAT epochs = one teacher run
        # plus one student run of this pipeline.
        tail.append({"kind": "baseline", "row": "tfmot_qat8", "bits": 8, "seed": seeds[0], "dir": d,
                      "cmd": [py, script, *base, "--set", f"seed={seeds[0]}", "--out", str(d),
                              "--results-md", "", "--verbose", "0"]})
    cut = len(steps) if first_seed_end is None else first_seed_end
    return steps[:cut] + tail + steps[cut:]


def _baseline_row(st: dict) -> dict:
    r = json.loads((Path(st["dir"]) / "results.json").read_text())
    acc = r["accuracy"]
    pct = lambda v: None if v is None else 100 * v  # noqa: E731
    return {"row": st["row"], "title": f"tfmot 8-bit QAT → int8 TFLite ({r['fp_epochs']}+{r['qat_epochs']} ep)",
            "bits": 8, "seeds": 1, "val_mean": pct(acc.get("val_tflite_int8")), "val_std": 0.0,
            "holdout_mean": pct(acc.get("holdout_tflite_int8")), "holdout_std": 0.0,
            "model_bytes": r["int8_tflite_bytes"], "model_file": "model_int8.tflite", "params": r["params"],
            "wall_time_s": r["seconds"]["total"], "runs": [str(st["dir"])]}


def summarise(cfg, steps: list[dict], partial: bool = False) -> tuple[list[dict], str]:
    """Rows of mean ± std accuracy over seeds, read from each run's metrics.json.

    ``partial``: skip runs that have not finished (``--report`` on an interrupted run) instead of
    failing; the ``seeds`` column then says how many runs each row holds.
    """
    groups: dict[tuple, list[dict]] = {}
    for st in steps:
        if st["kind"] == "train":
            if partial and not _finished(st):
                continue
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
                      "holdout_per_seed": {r["seed"]: 100 * r["holdout_accuracy"] for r in runs
                                           if r.get("holdout_accuracy") is not None},
                      "model_bytes": runs[0]["model_bytes"], "model_file": "model.keras", "params": runs[0]["params"],
                      "wall_time_s": sum(r["wall_time_s"] or 0 for r in runs),
                      "runs": [str(st["dir"]) for st in steps
                               if st["kind"] == "train" and st["row"] == row and st["bits"] == bits
                               and (not partial or _finished(st))]})
    for st in steps:
        if st["kind"] == "baseline" and (not partial or _finished(st)):
            table.append(_baseline_row(st))
    fmt = lambda m, s: "–" if m is None else f"{m:.2f} ± {s:.2f}"  # noqa: E731
    lines = ["| row | bits (w/a) | seeds | holdout acc. % (mean ± std) | val acc. % | params | model file |",
             "|---|---|---|---|---|---|---|"]
    for t in table:
        bits = "32/32" if t["bits"] == 32 else f"{t['bits']}/{t['bits']}"
        lines.append(f"| {t['title']} | {bits} | {t['seeds']} | {fmt(t['holdout_mean'], t['holdout_std'])} | "
                     f"{fmt(t['val_mean'], t['val_std'])} | {t['params']:,} | "
                     f"{t['model_bytes'] / 1e6:.2f} MB {t['model_file']} |")
    return table, "\n".join(lines)


def _write_results(cfg, config_path, sets, steps, out_dir: Path, log: list, wall: float | None,
                   partial: bool) -> tuple[dict, str]:
    from rolekd_tf.fileio import atomic_write_json, atomic_write_text

    table, md = summarise(cfg, steps, partial=partial)
    plots = sorted(str(p) for p in out_dir.glob("search-*/schedule.png"))
    tflite = sorted(str(p) for p in out_dir.glob("*/export/*.tflite"))
    journal = out_dir / "steps.jsonl"
    total = 0.0
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                total += float(json.loads(line)["seconds"])
            except (ValueError, KeyError):
                continue
    done = sum(_finished(st) for st in steps)
    header = (f"Pipeline `{cfg.name}` — data `{cfg.data.dataset}`, model `{cfg.model.name}`, "
              f"{cfg.train.epochs} epochs, train/val/holdout = {cfg.data.train_size}/{cfg.data.val_size}/"
              f"{cfg.data.holdout_size}; {done}/{len(steps)} steps finished; "
              f"step time summed over all invocations {total:.0f}s"
              + (f"; this invocation's wall time {wall:.0f}s" if wall is not None else "")
              + (" (PARTIAL: unfinished runs are left out)" if partial and done < len(steps) else "") + ".")
    atomic_write_text(out_dir / "results.md", header + "\n\n" + md + "\n")
    res = {"config": config_path, "sets": sets, "table": table, "steps": log, "wall_time_s": wall,
           "steps_finished": done, "steps_total": len(steps), "step_seconds_total": total,
           "schedule_plots": plots, "tflite": tflite}
    atomic_write_json(out_dir / "results.json", res)
    return res, md


#: rows trained with a searched schedule → the row they repeat exactly when that schedule is all zero
_SCHEDULE_ROWS = {"stage_alpha": "vanilla_fp", "stage_beta": "only_iikd", "student_at": "only_iikd"}


def check_searched_schedule(st: dict) -> None:
    """Before a training step that uses a searched schedule (stage α / stage β / A_T student):
    stop when the search learned an all-zero schedule — the row would repeat its baseline row
    byte for byte (issue 20) — and print a warning when the schedule is the best member's start
    policy unchanged (a random start selected, not evolved). One-line message naming the search
    directory and the setting to change (``rolekd_tf.search.informative``)."""
    row, cmd = st.get("row"), st.get("cmd", [])
    if st.get("kind") != "train" or row not in _SCHEDULE_ROWS or "--schedule" not in cmd:
        return
    from rolekd_tf.search.informative import schedule_status

    search_dir = Path(cmd[cmd.index("--schedule") + 1]).parent
    status = schedule_status(search_dir)
    if status.empty:
        raise StepFailed(
            f"{row} would repeat {_SCHEDULE_ROWS[row]}: {status.warning}; delete {search_dir} and "
            "re-run the pipeline with that setting (pipeline --set search.…)")
    if status.unchanged:
        print(f"warning: {status.warning}", file=sys.stderr, flush=True)


def run_pipeline(config_path: str, out: str | None = None, sets: list[str] | None = None,
                 report_only: bool = False) -> dict:
    """Run (or, with ``report_only``, only summarise) the pipeline; returns the results dict."""
    from rolekd_tf.config import load_config

    sets = list(sets or [])
    cfg = load_config(config_path, sets)
    out_dir = Path(out or f"runs/{cfg.name}-pipeline")
    if report_only:
        if not out_dir.is_dir():
            raise RolekdError(f"--report: {str(out_dir)!r} does not exist (run the pipeline first)")
        steps = plan(cfg, config_path, out_dir, sets)
        res, md = _write_results(cfg, config_path, sets, steps, out_dir, [], None, partial=True)
        print(md)
        print(f"\n{res['steps_finished']}/{res['steps_total']} steps finished; "
              f"results: {out_dir}/results.md, {out_dir}/results.json")
        return res
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = plan(cfg, config_path, out_dir, sets)
    print(f"pipeline {cfg.name}: {len(steps)} steps into {out_dir}/ (re-run the same command to resume)")
    t0 = time.time()
    log: list = []
    for st in steps:
        if st["kind"] == "baseline" and _finished(st):
            print(f"\n(skipping {st['dir']}: finished)", flush=True)
            continue
        check_searched_schedule(st)
        _run(st["cmd"], log, out_dir / "steps.jsonl")
    wall = time.time() - t0
    res, md = _write_results(cfg, config_path, sets, steps, out_dir, log, wall, partial=False)
    print("\n" + md)
    print(f"\nschedule plots: {', '.join(res['schedule_plots']) or '–'}")
    print(f"TFLite files:   {', '.join(res['tflite']) or '–'}")
    print(f"results: {out_dir}/results.md, {out_dir}/results.json  (total {wall:.0f}s)")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rolekd_tf.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--report", action="store_true",
                    help="run nothing: print and save the table of the runs finished so far")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args(argv)
    run_pipeline(args.config, args.out, args.set, report_only=args.report)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
