"""``make demo``: the whole method on the embedded default dataset, offline, on a CPU.

Runs :mod:`rolekd_tf.pipeline` with ``configs/demo.yaml`` into ``runs/demo``: every step is one of
the public commands, printed as it runs; re-running resumes. At the end it says what the two
searches learned: how many epochs of A_T (teacher) and A_S (student) apply any op, their most
used ops, and whether the two roles' schedules differ (the paper's Fig. 3 vs Fig. 4).
"""
from __future__ import annotations

import sys
from pathlib import Path

from rolekd_tf.cli import run_cli

_ROOT = Path(__file__).resolve().parents[1]


def describe_schedule(path: Path) -> tuple[str, object]:
    """One line about the schedule at ``path`` and its ``[epochs, 60]`` int array (None if absent)."""
    if not path.exists():
        return f"{path}: missing", None
    from rolekd_tf.augment.plot import schedule_op_stats
    from rolekd_tf.augment.policy import load_schedule

    sched = load_schedule(path)
    stats = schedule_op_stats(sched)  # prob: [epochs, 15], mean of the two copies, 0..1
    used = int((stats.prob.sum(axis=1) > 0).sum())
    per_op = stats.prob.mean(axis=0)
    top = [f"{stats.op_names[k]} {per_op[k]:.2f}" for k in per_op.argsort()[::-1][:3] if per_op[k] > 0]
    return (f"{used}/{sched.epochs} epochs apply an op; most used (mean probability): "
            f"{', '.join(top) or 'none'}"), sched.as_array()


def main(argv=None) -> int:
    import numpy as np

    from rolekd_tf.pipeline import run_pipeline

    config = "configs/demo.yaml" if Path("configs/demo.yaml").exists() else str(_ROOT / "configs" / "demo.yaml")
    out = Path("runs/demo")
    res = run_pipeline(config, str(out), list(argv or []))
    print("\nwhat the searches learned:")
    arrays = []
    for role, d in (("A_T (teacher)", out / "search-teacher"),
                    *((f"A_S ({b}-bit student)", out / f"search-student-w{b}a{b}") for b in _bits(res))):
        line, a = describe_schedule(d / "schedule.json")
        arrays.append(a)
        print(f"  {role}: {line}  [{d / 'schedule.png'}]")
    if len(arrays) > 1 and all(a is not None for a in arrays):
        same = all(np.array_equal(arrays[0], a) for a in arrays[1:])
        print("  the roles' schedules " + ("are IDENTICAL" if same else "differ"))
    return 0


def _bits(res: dict) -> list[int]:
    return sorted({int(t["bits"]) for t in res.get("table", []) if t.get("bits") not in (None, 32)
                   and t.get("row") != "tfmot_qat8"})


if __name__ == "__main__":
    sys.exit(run_cli(main))
