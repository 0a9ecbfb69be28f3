"""How often does a PBT search return an uninformative schedule? (issue 20, item 1)

The real :class:`~rolekd_tf.search.oracle.PBTOracle` (its exploit / explore / ranking code, driven
through its own PBT entry points ``populate_space`` / ``_record``, which Keras Tuner's
``create_trial`` / ``end_trial`` reach; every run first checks on a few searches that this gives
the identical state to driving it through Keras Tuner exactly as ``PBTTuner`` does) is run many
times on a synthetic objective, so each search costs milliseconds and the fractions below are
exact about the oracle's logic (not about any real network).

Synthetic member ("checkpoint" = a dict the simulated trial restores, as the tuner restores
``state.npz``): a skill ``q``; every epoch trained with policy P adds
``1 + beta · s(P) + sigma_w · N(0, 1)``, where ``s(P)`` is the mean probability of the 30 slots
(0..1); the reported score is ``q + sigma_e · N(0, 1)``. An exploit copies the source's ``q``
(as it copies weights). ``beta`` sets the regime: ``null`` (0: pure noise, the null case — which
member wins has nothing to do with its policy), ``helps`` (+0.5) and ``hurts`` (−0.5, the
small-scale regime the issue describes: augmentation only slows learning). With
``sigma_w = sigma_e = 0.1``, one explore step from zeros (mean probability 0.16) moves a member
by ±0.08 per epoch, comparable to the per-epoch noise.

Per cell (population, ready interval, epochs) and start rule, ``--seeds`` searches (search seed
= i, objective noise seed = 10^6 + i); the verdict per search is the product's own
:func:`rolekd_tf.search.informative.check_schedule` on the best final member's schedule (rebuilt
from its lineage with :func:`rolekd_tf.search.lineage.schedule_for_rows`):
*uninformative* = all zero, or equal to the member's start policy (it never exploited). 95 %
Wilson intervals.

Start rules: ``zeros`` (PBA), ``random`` (the product's ``search.init=random``: one PBA explore
step from zeros, :func:`rolekd_tf.search.space.random_initial_policy`), ``uniform`` (every
integer uniform over its full range; measured here only, to compare). A second table gives the
strength of each start rule under PBA's apply rule (expected ops applied per image, exact) next
to PBA's published paper-scale schedule.

    PYTHONPATH=$PWD python benchmarks/search_lineage.py            # 200 seeds, every cell
    PYTHONPATH=$PWD python benchmarks/search_lineage.py --seeds 20 --out /tmp/x.md   # quick
    # in parallel processes (what produced the committed report):
    for r in null helps hurts; do python benchmarks/search_lineage.py --regimes $r --raw-out $r.json & done; wait
    python benchmarks/search_lineage.py --merge null.json helps.json hurts.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "search_lineage.md"
PBA_SCHEDULE = Path(os.environ.get("ROLEKD_SCHEDULES_DIR", "/work/shared/data/schedules")) / "pba-rcifar10-16-wrn.txt"

POPULATIONS = (2, 4, 8, 16)
READY_INTERVALS = (1, 2, 3)
EPOCHS = (4, 6, 12)
REGIMES = {"null": 0.0, "helps": 0.5, "hurts": -0.5}
INITS = ("zeros", "random", "uniform")
SIGMA_W = 0.1
SIGMA_E = 0.1


def _oracle_class():
    from rolekd_tf.search.oracle import PBTOracle

    class InMemoryOracle(PBTOracle):
        """PBTOracle without its file persistence (oracle.json / trial.json): decisions unchanged."""

        def save(self):
            pass

        def _save_trial(self, trial):
            pass

    return InMemoryOracle


def start_policies(init: str, population: int, seed: int) -> list[list[int]]:
    from rolekd_tf.augment.policy import UPPER
    from rolekd_tf.search.space import initial_policies

    if init == "uniform":
        rng = np.random.default_rng([seed, 0xBE7C])
        return [[int(v) for v in rng.integers(0, UPPER + 1)] for _ in range(population)]
    return initial_policies(init, population, seed)


class _Metrics:
    """The two members of Keras Tuner's MetricsTracker that ``PBTOracle._record`` reads."""

    def __init__(self, value: float):
        self.metrics = {"val_accuracy": None}
        self._value = value

    def get_last_value(self, name):
        return self._value


class _Trial:
    """What ``PBTOracle._record`` reads from a Keras Tuner Trial."""

    def __init__(self, trial_id: str, values: dict, score: float):
        self.trial_id = trial_id
        self.hyperparameters = type("HP", (), {"values": values})()
        self.metrics = _Metrics(score)
        self.message = None


def _simulate_segment(hp, ckpt, rng, beta) -> tuple[float, float]:
    """(skill after the segment, reported score) of one simulated segment; see the docstring."""
    from rolekd_tf.augment.policy import slot_probabilities
    from rolekd_tf.search import oracle as om

    q = ckpt[hp[om.HP_RESTORE]] if hp[om.HP_RESTORE] else 0.0
    s = float(np.mean(slot_probabilities(json.loads(hp[om.HP_POLICY]))))
    n = hp[om.HP_EPOCHS] - hp[om.HP_INITIAL_EPOCH]
    q += n * (1.0 + beta * s) + SIGMA_W * math.sqrt(n) * float(rng.standard_normal())
    return q, q + SIGMA_E * float(rng.standard_normal())


def run_oracle(oracle_cls, population, ready_interval, epochs, init, beta, seed, *, driver="direct"):
    """One finished search. ``driver="keras_tuner"``: through ``create_trial`` / ``update_trial``
    / ``end_trial`` as ``PBTTuner`` does (~3 ms per segment here); ``"direct"``: the oracle's own
    PBT entry points that those calls reach — ``populate_space`` hands out the segment,
    ``_record`` books its score and runs the ready point — skipping Keras Tuner's generic
    bookkeeping (~10× faster). :func:`check_drivers_agree` proves both make the same decisions."""
    from rolekd_tf.search import oracle as om

    o = oracle_cls(population=population, ready_interval=ready_interval, epochs=epochs, seed=seed,
                   initial_policies=start_policies(init, population, seed))
    rng = np.random.default_rng(1_000_000 + seed)
    ckpt: dict[str, float] = {}
    n_trials = 0
    while True:
        if driver == "keras_tuner":
            t = o.create_trial("sim")
            status, hp, tid = t.status, t.hyperparameters.values, t.trial_id
        else:
            tid = f"{n_trials:04d}"  # Keras Tuner's id format (max_trials=None → 4 digits)
            resp = o.populate_space(tid)
            status, hp = resp["status"], resp["values"]
        if status != "RUNNING":
            assert status == "STOPPED", status  # one simulated worker: never IDLE
            break
        n_trials += 1
        q, score = _simulate_segment(hp, ckpt, rng, beta)
        ckpt[tid] = q
        if driver == "keras_tuner":
            o.update_trial(tid, {om.OBJECTIVE: score})
            t.status = "COMPLETED"
            o.end_trial(t)
        else:
            o._record(_Trial(tid, hp, score), failed=False)
    assert o.finished
    return o


def check_drivers_agree(oracle_cls, seeds: int = 3) -> None:
    """Both drivers give identical PBT states (decisions, lineage, members) on a few searches."""
    for pop, ri, ep, init, beta in [(4, 2, 6, "zeros", 0.5), (8, 1, 4, "random", -0.5), (16, 3, 12, "uniform", 0.0)]:
        for seed in range(seeds):
            a = run_oracle(oracle_cls, pop, ri, ep, init, beta, seed, driver="direct").pbt_state
            b = run_oracle(oracle_cls, pop, ri, ep, init, beta, seed, driver="keras_tuner").pbt_state
            for k in ("decisions", "lineage", "members", "finished"):
                if a[k] != b[k]:
                    raise AssertionError(f"drivers disagree on {k} (pop {pop}, ri {ri}, E {ep}, seed {seed})")


def run_search(oracle_cls, population, ready_interval, epochs, init, beta, seed):
    """One search; returns (ScheduleStatus, best member's exploit count)."""
    from rolekd_tf.search import lineage as lin
    from rolekd_tf.search.informative import check_schedule

    o = run_oracle(oracle_cls, population, ready_interval, epochs, init, beta, seed)
    best = o.best_member()
    rows = o.member_log(best)
    start = o.start_policy(best)
    sched = lin.schedule_for_rows(rows, epochs, default_policy=start).as_array()
    v = check_schedule(sched, start, where="sim", best_member=best, exploits=len(rows), init=init,
                       ready_interval=ready_interval, population=population)
    return v, len(rows)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, c - h), min(1.0, c + h)


def expected_ops_applied(policy) -> float:
    """E[ops applied per image] under PBA's apply rule (docs/METHOD.md §1), exact.

    Walking the shuffled 30 slots and applying each one that fires until the cap is reached
    applies ``min(cap, F)`` ops, F = number of slots that fire (independent Bernoulli(p_i)), so
    E = 0.3·P(F ≥ 1) + 0.5·(P(F ≥ 1) + P(F ≥ 2)).
    """
    from rolekd_tf.augment.policy import slot_probabilities

    p = slot_probabilities(np.asarray(policy, dtype=np.float64))
    p0 = float(np.prod(1 - p))
    p1 = float(sum(p[i] * np.prod(np.delete(1 - p, i)) for i in range(len(p))))
    ge1, ge2 = 1 - p0, 1 - p0 - p1
    return 0.3 * ge1 + 0.5 * (ge1 + ge2)


def strength(policies) -> dict:
    from rolekd_tf.augment.policy import slot_levels, slot_probabilities

    a = np.asarray(policies)
    p, lv = slot_probabilities(a), slot_levels(a).astype(float)
    w = p.sum(axis=1, keepdims=True)
    lvl = np.where(w[:, 0] > 0, (p * lv).sum(axis=1) / np.where(w[:, 0] > 0, w[:, 0], 1), 0.0)
    return {"mean_prob": float(p.mean()), "ops": float(np.mean([expected_ops_applied(x) for x in a])),
            "level": float(lvl.mean()), "n": len(a)}


def strength_table() -> list[str]:
    lines = ["| start rule / policy | policies | mean slot probability | E[ops applied per image] | "
             "probability-weighted mean level (0–9) |", "|---|---|---|---|---|"]
    rows = [("zeros (PBA, `search.init=zeros`)", start_policies("zeros", 1, 0)),
            ("random (`search.init=random`: one explore step from zeros)",
             [p for s in range(200) for p in start_policies("random", 5, s)]),
            ("uniform over PBA's ranges (benchmark only)",
             [p for s in range(200) for p in start_policies("uniform", 5, s)])]
    if PBA_SCHEDULE.exists():
        from rolekd_tf.augment.policy import load_schedule

        arr = load_schedule(PBA_SCHEDULE, epochs=200).as_array()
        rows += [("PBA published reduced-CIFAR-10 schedule, all 200 epochs", arr.tolist()),
                 ("  … its epochs 0–99", arr[:100].tolist()),
                 ("  … its last policy (epochs 195–199)", arr[-1:].tolist())]
    for name, pols in rows:
        s = strength(pols)
        lines.append(f"| {name} | {s['n']} | {s['mean_prob']:.3f} | {s['ops']:.3f} | {s['level']:.2f} |")
    return lines


def measure(regimes, pops, inits, seeds: int) -> dict:
    """{"regime|pop|ri|ep|init": [uninformative, empty]} over ``seeds`` searches per cell.

    In the ``null`` regime the score does not depend on the policy and explore draws the same
    number of random values whatever the policy, so every start rule makes identical exploit
    decisions: only ``zeros`` is run there (the others' fractions are the same numbers)."""
    oracle_cls = _oracle_class()
    check_drivers_agree(oracle_cls)
    t0 = time.perf_counter()
    res: dict = {}
    for regime, (pop, ri, ep), init in itertools.product(
            regimes, itertools.product(pops, READY_INTERVALS, EPOCHS), inits):
        if ri > ep or (regime == "null" and init != "zeros"):
            continue
        bad = empty = 0
        for seed in range(seeds):
            v, _ = run_search(oracle_cls, pop, ri, ep, init, REGIMES[regime], seed)
            bad += not v.informative
            empty += v.empty
        res[f"{regime}|{pop}|{ri}|{ep}|{init}"] = [bad, empty]
        print(f"{regime:5s} pop {pop:2d} ri {ri} E {ep:2d} {init:7s}: uninformative {bad}/{seeds} "
              f"empty {empty}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    return res


def report(res: dict, seeds: int, wall: float, command: str) -> str:
    def cell(k):
        lo, hi = wilson(k, seeds)
        return f"{k / seeds:.2f} [{lo:.2f}, {hi:.2f}]"

    keys = [k.split("|") for k in res]
    regimes = [r for r in REGIMES if any(k[0] == r for k in keys)]
    pops = sorted({int(k[1]) for k in keys})
    md = ["# Uninformative PBT schedules at small scale",
          "",
          f"Generated by `{command}` ({wall:.0f} s of measurement in parallel processes on a shared, "
          "busy 2-core machine). The real `PBTOracle` (PBA's rules: quantile 0.25, resample 0.2, "
          "perturb ±0..3, synchronous generations) driven through its PBT entry points on a "
          "synthetic objective; see the script's docstring for the model and the driver check.",
          "",
          "Cell value: fraction of searches whose best final member's schedule is **uninformative** "
          "(all zero, or its start policy unchanged because it never exploited), with its 95 % "
          f"Wilson interval, over {seeds} seeded searches (search seeds 0..{seeds - 1}). With `zeros`, "
          "uninformative = all zero (empty). With `random` / `uniform` no search returned an all-zero "
          "schedule (a start that is all zero has probability < 1e-8); uninformative = the winner's "
          "random start, selected but not evolved. `ready points` = ceil(epochs / interval) − 1.",
          ""]
    for regime in regimes:
        note = (" — the score ignores the policy, so all start rules make identical decisions "
                "(measured for `zeros`; the same fractions hold for `random` and `uniform`)"
                if regime == "null" else "")
        inits = [i for i in INITS if any(k[0] == regime and k[4] == i for k in keys)]
        md += [f"## Objective `{regime}` (beta = {REGIMES[regime]:+g}){note}", "",
               "| population | ready interval | epochs | ready points | "
               + " | ".join(f"init `{i}`" for i in inits) + " |",
               "|---|---|---|---|" + "---|" * len(inits)]
        for pop, ri, ep in itertools.product(pops, READY_INTERVALS, EPOCHS):
            if ri > ep or f"{regime}|{pop}|{ri}|{ep}|{inits[0]}" not in res:
                continue
            ready = math.ceil(ep / ri) - 1
            md.append(f"| {pop} | {ri} | {ep} | {ready} | "
                      + " | ".join(cell(res[f"{regime}|{pop}|{ri}|{ep}|{i}"][0]) for i in inits) + " |")
        md.append("")
    md += ["## Strength of the start rules", "",
           "Expected number of ops applied per image under PBA's apply rule (cap 0/1/2 with p = "
           ".2/.3/.5; exact), next to PBA's published paper-scale schedule.", ""] + strength_table() + [""]
    return "\n".join(md)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--out", default=str(RESULT), help="markdown report")
    ap.add_argument("--populations", default=",".join(map(str, POPULATIONS)))
    ap.add_argument("--regimes", default=",".join(REGIMES))
    ap.add_argument("--inits", default=",".join(INITS))
    ap.add_argument("--raw-out", default=None, help="write the raw counts (JSON) here instead of a report")
    ap.add_argument("--merge", nargs="+", default=None, metavar="RAW_JSON",
                    help="write the report from raw count files of parallel runs (measures nothing)")
    args = ap.parse_args(argv)
    from rolekd_tf.fileio import atomic_write_json, atomic_write_text

    if args.merge:
        res, wall, seeds = {}, 0.0, None
        for f in args.merge:
            d = json.loads(Path(f).read_text())
            res.update(d["counts"])
            wall = max(wall, d["wall_seconds"])
            if seeds not in (None, d["seeds"]):
                raise SystemExit(f"error: {f} has {d['seeds']} seeds, the others {seeds}")
            seeds = d["seeds"]
        cmd = (f"PYTHONPATH=$PWD python benchmarks/search_lineage.py --seeds {seeds} --regimes R "
               "[--populations P] --raw-out F.json` in parallel processes (one per regime; population 16 "
               "of `helps` / `hurts` in its own), then `… --merge F.json …")
        atomic_write_text(args.out, report(res, seeds, wall, cmd))
        print(f"wrote {args.out}")
        return 0
    t0 = time.perf_counter()
    res = measure(args.regimes.split(","), [int(x) for x in args.populations.split(",")],
                  args.inits.split(","), args.seeds)
    wall = time.perf_counter() - t0
    if args.raw_out:
        atomic_write_json(args.raw_out, {"seeds": args.seeds, "wall_seconds": wall, "counts": res})
        print(f"wrote {args.raw_out} ({wall:.0f} s)")
        return 0
    cmd = "PYTHONPATH=$PWD python benchmarks/search_lineage.py" + " ".join(
        a for a in [""] + (argv if argv is not None else sys.argv[1:]))
    atomic_write_text(args.out, report(res, args.seeds, wall, cmd.replace("py--", "py --")))
    print(f"wrote {args.out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
