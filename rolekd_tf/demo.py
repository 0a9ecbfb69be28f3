"""``make demo``: the main job on the embedded default dataset, offline, on a CPU.

Each step runs one of the public commands in a subprocess, printed as it runs so users can learn
and re-run them one by one. Every step writes files under ``runs/demo`` and resumes if re-run.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "configs/quickstart.yaml"
ROOT = Path("runs/demo")


def sh(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd)
    if rc != 0:
        sys.exit(f"error: step failed with exit code {rc}: {' '.join(cmd)}")
    print(f"  ({time.time() - t0:.0f}s)", flush=True)


def final(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["final"]


def main() -> int:
    py = sys.executable
    teacher, student = ROOT / "teacher", ROOT / "student-w2a2"
    t0 = time.time()
    sh([py, "train.py", "--config", CONFIG, "--out", str(teacher), "--quiet"])
    sh([py, "train.py", "--config", CONFIG, "--set", "model.w_bits=2", "--set", "model.a_bits=2",
        "--set", "train.optimizer=adam", "--set", "train.lr=0.001", "--set", "train.weight_decay=1e-5",
        "--init", str(teacher), "--out", str(student), "--quiet"])
    print("\n| model | bits (w/a) | val accuracy | holdout accuracy | params |")
    print("|---|---|---|---|---|")
    for name, run in (("teacher", teacher), ("vanilla 2-bit student", student)):
        f = final(run)
        print(f"| {name} | {f['w_bits']}/{f['a_bits']} | {100 * f['val_accuracy']:.2f}% | "
              f"{100 * f['holdout_accuracy']:.2f}% | {f['params']:,} |")
    print(f"\nresults: {teacher}/ and {student}/ (model.keras, metrics.json, tb/); "
          f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
