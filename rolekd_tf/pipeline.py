"""The whole method end to end: stage α search → teacher → stage β search → students → export.

``python -m rolekd_tf.pipeline --config CFG [--out DIR] [--set k=v …]`` runs the rows of the
paper's Tables 1–4 named in ``cfg.pipeline.rows`` (the row table: :mod:`rolekd_tf.rows`) by calling
the public commands (``search.py``, ``train.py``, ``python -m rolekd_tf.export``) in subprocesses,
printing each so users can re-run any step alone. Every step writes its own directory under
``DIR`` and resumes when re-run, so the driver itself resumes after an interruption. The summary
table is read back from each run's ``metrics.json`` (never from the driver's memory), printed next
to the paper's number for the same row (:mod:`rolekd_tf.paper_results`), and written to
``DIR/results.md`` / ``results.json``.

Two data scales: searches read the search's reduced split (``search.train_size`` /
``search.val_size``), final trainings the full training split (``data.*``) and report on the
dataset's test split. ``pipeline.teacher_schedule: PATH`` gives stage α a schedule file instead of
a search (paper §5.1: CIFAR-100 reuses CIFAR-10's A_T).

Table 2 rows: ``vanilla_fp``, ``stage_alpha`` (teachers), ``vanilla_lowbit`` and ``alpha_lowbit``
(k-bit from scratch, baseline augmentation / A_T, no KD), ``only_iikd`` and ``stage_beta`` (k-bit
initialised from the teacher, II-KD, baseline augmentation / A_S); Table 3: ``student_at`` (II-KD +
A_T), ``t3_<kd>_at`` / ``t3_<kd>_as``; Table 1: ``t1_<kd>``; Table 4: ``t4_<student>`` (FP
student, II-KD + A_S, 1×1 adapters) and ``t4_<student>_vanilla``.

``--dry-run`` prints the plan — every step, its command, the data it reads and an estimate of its
GPU-hours (:mod:`rolekd_tf.cost`) — and runs and writes nothing. With ``pipeline.tfmot: true`` one
more row runs tfmot's 8-bit QAT baseline (``benchmarks/tfmot_baseline.py``, its own process) on the
same data, recipe and epoch budget. ``--report`` prints the table of whatever has finished (e.g.
while a long run is still going).
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
from rolekd_tf.rows import ROW_TABLE, Row, canonical, without_schedule

#: title of every row that has runs of its own (aliases show their target's runs)
ROW_TITLES = {name: r.title for name, r in ROW_TABLE.items() if r.same_as is None}


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
    # top-level in metrics.json (null / absent: no test split, or a run from before test splits)
    f["test_accuracy"] = m.get("test_accuracy")
    f["test_examples"] = int(m.get("test_examples") or 0)
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


def _row_sets(cfg, row: Row, bits: int, kd: str | None = None) -> list[str]:
    """``section.key=value`` overrides that turn the config into ``row``'s run at ``bits``
    (``kd`` replaces the row's loss: a stage β search for a row runs with II-KD)."""
    if row.teacher:
        return ["distill.kd=none"]
    kd = row.kd if kd is None else kd
    sets = list(cfg.pipeline.student_set) if row.recipe == "student" else []
    if row.model is not None:
        sets.append(f"model.name={row.model}")
    sets += [f"model.w_bits={bits}", f"model.a_bits={bits}", f"distill.kd={kd}"]
    if row.adapter:
        sets.append("distill.adapter=true")
    return sets


def _student_search_dir(out: Path, row: Row, bits: int, kd: str) -> Path:
    name = "search-student-" + (f"w{bits}a{bits}" if row.lowbit else "fp32")
    if row.model is not None:
        name += f"-{row.model}"
    return out / (name if kd == "ii" else f"{name}-{kd}")


def teacher_row(rows) -> str | None:
    """The row whose first-seed run every student distils from: stage α when planned."""
    names = {canonical(r).name for r in rows}
    return next((t for t in ("stage_alpha", "vanilla_fp") if t in names), None)


def plan(cfg, config_path: str, out: Path, sets: list[str]) -> list[dict]:
    """The ordered steps; computes, creates and reads nothing.

    Every step is a dict with ``kind`` (search | train | export | baseline), ``dir`` and ``cmd``;
    search and train steps also ``row``, ``seed``, ``bits`` (32 = full precision), ``sets`` (the
    step's ``section.key=value`` overrides on top of the config and the user's ``--set``),
    ``scale`` (``search``: the search's reduced split, ``search.train_size``/``val_size``;
    ``full``: ``data.*``), ``model``, ``kd``, ``teacher`` / ``init`` / ``schedule`` (paths or None).

    Seed-major order: the searches, every row of the first seed, the exports and the baseline
    come first, then the other seeds, so an interrupted run already holds one complete table
    (``--report`` prints it). Rows that are aliases (``rolekd_tf.rows``) add no runs.
    """
    py = sys.executable
    base = ["--config", config_path] + [a for s in sets for a in ("--set", s)]
    p = cfg.pipeline
    runs = [ROW_TABLE[n] for n in dict.fromkeys(canonical(r).name for r in p.rows)]
    seeds = list(p.seeds)
    t_row = teacher_row(p.rows)
    teacher = None if t_row is None else out / f"teacher-{'alpha' if t_row == 'stage_alpha' else 'vanilla'}-s{seeds[0]}"
    steps: list[dict] = []
    at = Path(p.teacher_schedule) if p.teacher_schedule else out / "search-teacher" / "schedule.json"
    if any(r.schedule == "A_T" for r in runs) and not p.teacher_schedule:
        d = out / "search-teacher"
        steps.append({"kind": "search", "row": "stage_alpha", "seed": cfg.seed, "bits": 32, "dir": d,
                      "sets": ["distill.kd=none"], "scale": "search", "model": cfg.model.name, "kd": "none",
                      "teacher": None, "init": None, "schedule": None,
                      "cmd": [py, _script("search.py"), "--role", "teacher", *base, "--set", "distill.kd=none",
                              "--out", str(d), "--quiet"]})
    searches: dict[Path, list[str]] = {}
    first_seed_end = None

    def student_search(row: Row, bits: int) -> Path:
        """The stage β search ``row`` trains with (added to the plan at first use)."""
        kd = "ii" if p.student_search == "iikd" else row.kd
        d = _student_search_dir(out, row, bits, kd)
        s_sets = _row_sets(cfg, row, bits, kd=kd)
        if d in searches:
            return d
        searches[d] = s_sets
        steps.append({"kind": "search", "row": row.name, "seed": cfg.seed, "bits": bits, "dir": d,
                      "sets": s_sets, "scale": "search", "model": row.model or cfg.model.name, "kd": kd,
                      # search.py starts students from the teacher's weights: rows trained from
                      # scratch (Table 4's foreign networks) need it not to (docs/PROTOCOL.md)
                      "teacher": teacher, "init": teacher if row.init == "teacher" else None, "schedule": None,
                      "cmd": [py, _script("search.py"), "--role", "student", *base,
                              *[a for s in s_sets for a in ("--set", s)], "--teacher", str(teacher),
                              "--out", str(d), "--quiet"]})
        return d

    for i, sd in enumerate(seeds):
        if i == 1:
            first_seed_end = len(steps)
        ordered = ([(r, 32) for r in runs if r.teacher] + [(r, 32) for r in runs if not r.teacher and not r.lowbit]
                   + [(r, b) for b in p.bits for r in runs if r.lowbit])
        for row, b in ordered:
            sched = {"A_T": at, "baseline": None}.get(row.schedule)
            if row.schedule == "A_S":
                sched = student_search(row, b) / "schedule.json"
            if row.teacher:
                d = out / f"teacher-{'alpha' if row.name == 'stage_alpha' else 'vanilla'}-s{sd}"
            else:
                d = out / f"{f'w{b}a{b}' if row.lowbit else 'fp32'}-{row.name}-s{sd}"
            r_sets = _row_sets(cfg, row, b)
            init = teacher if row.init == "teacher" else None
            t_dir = teacher if row.kd != "none" else None
            cmd = [py, _script("train.py"), *base, *[a for s in r_sets for a in ("--set", s)],
                   "--set", f"seed={sd}"]
            if init is not None:
                cmd += ["--init", str(init)]
            if t_dir is not None:
                cmd += ["--teacher", str(t_dir)]
            if sched is not None:
                cmd += ["--schedule", str(sched)]
            steps.append({"kind": "train", "row": row.name, "bits": b, "seed": sd, "dir": d,
                          "sets": r_sets + [f"seed={sd}"], "scale": "full", "model": row.model or cfg.model.name,
                          "kd": row.kd, "teacher": t_dir, "init": init, "schedule": sched,
                          "cmd": cmd + ["--out", str(d), "--quiet"]})
    tail: list[dict] = []
    names = [r.name for r in runs]
    if p.export:
        final_row = next((r for r in ("stage_beta", "only_iikd", "vanilla_lowbit") if r in names), None)
        if final_row:
            for b in p.bits:
                d = out / f"w{b}a{b}-{final_row}-s{seeds[0]}"
                tail.append({"kind": "export", "dir": d, "cmd": [py, "-m", "rolekd_tf.export", str(d)]})
        if teacher is not None:
            tail.append({"kind": "export", "dir": teacher, "cmd": [py, "-m", "rolekd_tf.export", str(teacher)]})
    if p.tfmot:
        d = out / "tfmot-qat8"
        script = _script("benchmarks/tfmot_baseline.py")
        # Same data, recipe and seed as the teacher rows; E FP + E QAT epochs = one teacher run
        # plus one student run of this pipeline.
        tail.append({"kind": "baseline", "row": "tfmot_qat8", "bits": 8, "seed": seeds[0], "dir": d,
                     "sets": [], "scale": "full", "model": cfg.model.name, "kd": "none",
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
        tm, ts = stat("test_accuracy")
        table.append({"row": row, "title": ROW_TITLES[row].format(b=bits), "bits": bits, "seeds": len(runs),
                      "test_mean": tm, "test_std": ts,
                      "test_seeds": sum(1 for r in runs if r.get("test_accuracy") is not None),
                      "test_examples": max(r["test_examples"] for r in runs),
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
    lines = ["| row | bits (w/a) | seeds | test acc. % (mean ± std) | holdout acc. % (mean ± std) | val acc. % "
             "| params | model file |",
             "|---|---|---|---|---|---|---|---|"]
    for t in table:
        bits = "32/32" if t["bits"] == 32 else f"{t['bits']}/{t['bits']}"
        lines.append(f"| {t['title']} | {bits} | {t['seeds']} | {fmt(t.get('test_mean'), t.get('test_std'))} | "
                     f"{fmt(t['holdout_mean'], t['holdout_std'])} | "
                     f"{fmt(t['val_mean'], t['val_std'])} | {t['params']:,} | "
                     f"{t['model_bytes'] / 1e6:.2f} MB {t['model_file']} |")
    return table, "\n".join(lines)


def paper_comparison(cfg, table: list[dict]) -> tuple[list[dict], str]:
    """Each requested row (aliases included) beside the paper's number for the same row.

    ``table``: :func:`summarise`'s rows. Ours is the test-split mean when the runs have one
    (``test_mean``), else the holdout mean — the column says which. Paper numbers exist only
    where docs/METHOD.md has them (:mod:`rolekd_tf.paper_results`); elsewhere "–".
    """
    from rolekd_tf.paper_results import paper_number

    by_key = {(t["row"], t["bits"]): t for t in table}
    out, lines = [], ["| table | row | bits (w/a) | ours % | measured on | paper % |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(cfg.pipeline.rows):
        row, target = ROW_TABLE[name], canonical(name)
        for b in (cfg.pipeline.bits if target.lowbit else [32]):
            t = by_key.get((target.name, b))
            model = target.model or cfg.model.name
            paper = paper_number(name, cfg.data.dataset, model, b)
            ours, on = None, "–"
            if t is not None:
                for key, split in (("test_mean", "test"), ("holdout_mean", "holdout"), ("val_mean", "val")):
                    if t.get(key) is not None:
                        ours, on = (t[key], t.get(key.replace("mean", "std"))), split
                        break
            out.append({"table": row.table, "row": name, "runs_of": target.name, "bits": b, "model": model,
                        "ours_mean": None if ours is None else ours[0],
                        "ours_std": None if ours is None else ours[1], "measured_on": on, "paper": paper})
            o = "–" if ours is None else f"{ours[0]:.2f} ± {ours[1] or 0:.2f}"
            lines.append(f"| {row.table} | {row.title.format(b=b)} | {'32/32' if b == 32 else f'{b}/{b}'} | {o} | "
                         f"{on} | {'–' if paper is None else f'{paper:.2f}'} |")
    return out, "\n".join(lines)


def _write_results(cfg, config_path, sets, steps, out_dir: Path, log: list, wall: float | None,
                   partial: bool) -> tuple[dict, str]:
    from rolekd_tf.fileio import atomic_write_json, atomic_write_text

    table, md = summarise(cfg, steps, partial=partial)
    paper, paper_md = paper_comparison(cfg, table)
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
    md = md + "\n\nNext to the paper (same table, row and bit width):\n\n" + paper_md
    atomic_write_text(out_dir / "results.md", header + "\n\n" + md + "\n")
    res = {"config": config_path, "sets": sets, "table": table, "paper_comparison": paper, "steps": log,
           "wall_time_s": wall, "steps_finished": done, "steps_total": len(steps), "step_seconds_total": total,
           "schedule_plots": plots, "tflite": tflite}
    atomic_write_json(out_dir / "results.json", res)
    return res, md


def dry_run(config_path: str, out: str | None = None, sets: list[str] | None = None) -> dict:
    """Print the plan (steps, commands, data read, GPU-hour estimates); run and write nothing."""
    from rolekd_tf.config import load_config
    from rolekd_tf.dryrun import describe

    sets = list(sets or [])
    cfg = load_config(config_path, sets)
    out_dir = Path(out or f"runs/{cfg.name}-pipeline")
    steps = plan(cfg, config_path, out_dir, sets)
    text, total = describe(cfg, steps)
    print(f"pipeline {cfg.name} (dry run: nothing is run or written) into {out_dir}/")
    ts = cfg.pipeline.teacher_schedule
    if ts and not Path(ts).is_file():
        print(f"note: pipeline.teacher_schedule {ts} does not exist yet: run the pipeline that writes it first")
    print(text)
    return {"steps": steps, "gpu_hours": total}


def _check_inputs(cfg) -> None:
    """Fail before the first step on inputs the plan takes from outside ``--out``."""
    ts = cfg.pipeline.teacher_schedule
    if ts and any(canonical(r).schedule == "A_T" for r in cfg.pipeline.rows) and not Path(ts).is_file():
        raise RolekdError(f"pipeline.teacher_schedule={ts!r} is not a file (e.g. run the CIFAR-10 pipeline "
                          "first and point at its search-teacher/schedule.json)")


def check_searched_schedule(st: dict) -> None:
    """Before a training step that uses a searched schedule (stage α / stage β / an A_T or A_S row):
    stop when the search learned an all-zero schedule — the row would repeat its baseline row
    (``rows.without_schedule``) byte for byte (issue 20) — and print a warning when the schedule is
    the best member's start policy unchanged (a random start selected, not evolved). One-line
    message naming the search directory and the setting to change
    (``rolekd_tf.search.informative``). A schedule file given by ``pipeline.teacher_schedule`` is
    not a search of this pipeline and is taken as it is."""
    row, cmd = st.get("row"), st.get("cmd", [])
    if st.get("kind") != "train" or row is None or "--schedule" not in cmd:
        return
    search_dir = Path(cmd[cmd.index("--schedule") + 1]).parent
    if not (search_dir / "summary.json").is_file():
        return
    from rolekd_tf.search.informative import schedule_status

    status = schedule_status(search_dir)
    base = without_schedule(row)
    if status.empty:
        repeats = f"would repeat {base.name}" if base is not None else "would train with no policy augmentation"
        raise StepFailed(
            f"{row} {repeats}: {status.warning}; delete {search_dir} and "
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
    _check_inputs(cfg)
    steps = plan(cfg, config_path, out_dir, sets)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan (commands, data each step reads, GPU-hour estimates); run and write nothing")
    ap.add_argument("--debug", action="store_true")
    from rolekd_tf.cli import add_verbose_flag

    add_verbose_flag(ap)
    args = ap.parse_args(argv)
    if args.dry_run and args.report:
        raise RolekdError("--dry-run and --report exclude each other")
    if args.dry_run:
        dry_run(args.config, args.out, args.set)
    else:
        run_pipeline(args.config, args.out, args.set, report_only=args.report)
    return 0


if __name__ == "__main__":
    from rolekd_tf.cli import run_cli

    sys.exit(run_cli(main))
