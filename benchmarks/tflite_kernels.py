"""Single-image latency of exported TFLite files under both CPU kernel sets, side by side.

    python benchmarks/tflite_kernels.py RUN_DIR [RUN_DIR ...] [--threads 1 2] [--repeats 300]

For each run's ``export/model_fp32.tflite`` and ``export/model_int8.tflite``: the median ``invoke``
time (ms) with the default XNNPACK delegate and with TFLite's builtin kernels
(``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``, ruy), per thread count, and the int8 times
over the best fp32 time. It answers "would another kernel set give the int8 speed-up this CPU's
XNNPACK does not?" (issue 6's latency target) without trusting either answer in advance.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

KERNELS = ("xnnpack", "builtin")
FILES = ("fp32", "int8")


def median_ms(path: Path, threads: int, kernels: str, repeats: int) -> float:
    """Median wall time (ms) of one ``invoke`` on a fixed random pixel image (seed 0), timed by the
    exporter's own :func:`rolekd_tf.export.tflite.latency_ms` (20 warm-up invokes)."""
    from ai_edge_litert.interpreter import OpResolverType as res

    from rolekd_tf.export.tflite import interpreter, latency_ms

    it = interpreter(path, num_threads=threads,
                     experimental_op_resolver_type=res.AUTO if kernels == "xnnpack"
                     else res.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    shape = tuple(it.get_input_details()[0]["shape"][1:])
    x = np.random.default_rng(0).integers(0, 256, (1, *shape)).astype(np.float32)
    return latency_ms(it, x, repeats=repeats, warmup=20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories with export/model_{fp32,int8}.tflite")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=300)
    a = ap.parse_args(argv)
    for rd in a.runs:
        for f in FILES:
            if not (rd / "export" / f"model_{f}.tflite").is_file():
                print(f"error: {rd / 'export' / f'model_{f}.tflite'} not found "
                      f"(run python -m rolekd_tf.export {rd} first)", file=sys.stderr)
                return 2
    head = " | ".join(f"{f} {k}" for f in FILES for k in KERNELS)
    print(f"| run | threads | {head} | int8 xnnpack / fp32 best | int8 builtin / fp32 best |")
    print("|---|---|" + "---|" * (len(FILES) * len(KERNELS) + 2))
    for rd in a.runs:
        for th in a.threads:
            ms = {(f, k): median_ms(rd / "export" / f"model_{f}.tflite", th, k, a.repeats)
                  for f in FILES for k in KERNELS}
            best32 = min(ms["fp32", k] for k in KERNELS)
            cells = " | ".join(f"{ms[f, k]:.3f}" for f in FILES for k in KERNELS)
            print(f"| {rd.name} | {th} | {cells} | {ms['int8', 'xnnpack'] / best32:.2f} | "
                  f"{ms['int8', 'builtin'] / best32:.2f} |", flush=True)
    print(f"(ms, median of {a.repeats} single-image invokes after 20 warm-up; uint8 pixels for int8, float32 for fp32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
