"""Does XLA (`jit_compile=True`) speed up training here? ResNet-20, FP and W2A2, batch 128.

Builds four compiled models — {FP, W2A2} × {jit_compile False, True} — warms each up (tracing and
XLA compilation excluded from the timings), then runs several *interleaved* rounds: in each round
every configuration trains ``--steps`` steps on the same random batch (order rotated per round), so
background load from other processes hits all configurations alike. Reports the median img/s per
configuration over the rounds and the jit/no-jit ratio, and writes a markdown snippet to
``benchmarks/results/jit_compile.md``. Used to pick ``choose_jit_compile("auto")``'s CPU default.

    .venv/bin/python benchmarks/jit_compile.py [--rounds 5] [--steps 4] [--out PATH]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from rolekd_tf.fileio import atomic_write_text  # noqa: E402
from rolekd_tf.models import build_model  # noqa: E402

BATCH = 128


def _compiled(w_bits: int, a_bits: int, jit: bool) -> keras.Model:
    model = build_model("resnet20", num_classes=10, w_bits=w_bits, a_bits=a_bits)
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=190.0,
                    help="stop starting new rounds after this many seconds (keeps it < 4 min)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per config per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "jit_compile.md"))
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=(BATCH,)).astype(np.int32)

    configs = {}
    for label, wb, ab in (("FP32", 32, 32), ("W2A2", 2, 2)):
        for jit in (False, True):
            configs[(label, jit)] = _compiled(wb, ab, jit)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    for key, model in configs.items():
        for _ in range(args.warmup):
            model.train_on_batch(x, y)  # returns the loss as NumPy: synchronous
    warm_s = time.perf_counter() - t0

    rates = {k: [] for k in configs}
    keys = list(configs)
    done = 0
    for r in range(args.rounds):
        if r >= 2 and time.perf_counter() - t0 > args.budget:
            print(f"time budget reached after {r} rounds", flush=True)
            break
        done += 1
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for key in order:
            model = configs[key]
            t = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            rates[key].append(args.steps * BATCH / (time.perf_counter() - t))
        print(f"round {r + 1}/{args.rounds}: "
              + ", ".join(f"{k[0]} jit={k[1]}: {rates[k][-1]:.0f}" for k in keys), flush=True)
    load_end = os.getloadavg()
    total_s = time.perf_counter() - t0

    med = {k: statistics.median(v) for k, v in rates.items()}
    lines = []
    for label in ("FP32", "W2A2"):
        off, on = med[(label, False)], med[(label, True)]
        lines.append(
            f"| ResNet-20 {label} | {off:.0f} | {on:.0f} | {on / off:.2f} | "
            f"{min(rates[(label, False)]):.0f}–{max(rates[(label, False)]):.0f} | "
            f"{min(rates[(label, True)]):.0f}–{max(rates[(label, True)]):.0f} |")
        print(f"{label}: jit_compile=False {off:.0f} img/s, True {on:.0f} img/s, "
              f"ratio True/False = {on / off:.2f}")

    cmd = "python benchmarks/jit_compile.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"""# XLA (`jit_compile`) vs. plain graph execution — ResNet-20 training throughput

- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}
- command: `{cmd.strip()}` ({done} interleaved rounds × {args.steps} timed steps per
  configuration after {args.warmup} warm-up steps; median over rounds; batch {BATCH}, random
  data, SGD-Nesterov, `train_on_batch`)
- machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), no GPU;
  TF {tf.__version__}, Keras {keras.__version__}.
- The CPU is **shared with other engineers' jobs**: load average {load_start[0]:.1f} at the
  start, {load_end[0]:.1f} at the end, so absolute figures are noisy (docs/METHOD.md §7's figures on
  an idle machine: ≈390 img/s without XLA, ≈211 with); interleaving makes the ratio the meaningful number.
- wall time: {total_s:.0f} s (warm-up incl. XLA compilation {warm_s:.0f} s)

| model | img/s, jit_compile=False | img/s, jit_compile=True | ratio True/False | range False | range True |
|---|---|---|---|---|---|
{chr(10).join(lines)}

Conclusion used by `rolekd_tf.models.choose_jit_compile("auto")`: on CPU-only machines keep
`jit_compile=False`; enable XLA only when a GPU is visible.
"""
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
