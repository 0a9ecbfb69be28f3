"""Rebuild BENCHMARKS.md from the per-benchmark snippets in benchmarks/results/.

Each benchmark script writes its own snippet (date, exact command, machine load, figures measured
side by side in one run); this only gathers them, in a fixed order, so BENCHMARKS.md never holds a
number that no script printed.

    python benchmarks/collect.py
"""
from pathlib import Path

ORDER = [
    ("jit_compile.md", "XLA vs graph mode (training throughput)", "benchmarks/jit_compile.py"),
    ("augment.md", "Batched augmentation vs PIL, pipeline vs trainer", "benchmarks/augment.py"),
    ("distill_step.md", "II-KD Distiller step vs plain step", "benchmarks/distill_step.py"),
    ("search_overhead.md", "PBT search overhead", "benchmarks/search_overhead.py"),
    ("export.md", "Export: sizes, parity, latency", "benchmarks/export.py"),
    ("export_variant.md", "Export: int8-exact variant, several seeds",
     "benchmarks/export.py with variant flags and --seed (commands inside)"),
    ("tfmot_baseline.md", "tfmot 8-bit QAT baseline (tf_keras, separate process)", "benchmarks/tfmot_baseline.py"),
    ("data.md", "Data loading", "tests/data (timings from the data tests)"),
]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    res = root / "benchmarks" / "results"
    parts = [
        "# Benchmarks\n",
        "Every figure below was printed by the script named in its section, on this project's machine "
        "(2 CPU cores, no GPU, TF 2.21, Keras 3.15), with the date, command and machine load beside it. "
        "The machine was shared with other jobs while these ran, so absolute throughputs are noisy; "
        "each script measures the compared variants interleaved in one run and reports ratios. "
        "Regenerate this file with `python benchmarks/collect.py` after re-running a script.\n",
        "| section | script | target | status |\n|---|---|---|---|\n"
        "| XLA vs graph | `benchmarks/jit_compile.py` | choose per device | XLA 0.27–0.39× graph speed on CPU → `jit_compile: auto` = off on CPU |\n"
        "| augmentation | `benchmarks/augment.py` | ≥10× PIL/PBA per image; pipeline ≥20× trainer | met: 14.0–15.8× PBA's per-image path (4.2–4.5× a lean PIL loop) at load ≈ 9.5; pipeline 80–85× trainer (fresh-iterator timing) |\n"
        "| distillation step | `benchmarks/distill_step.py` | II-KD step ≤1.6× plain | met for `weighted_sum` (paper Eq. 10): 1.40× median; **not met** for the default released clip rule: 1.98× (its second backward pass; floor ≈ 1.73× for any exact implementation of that rule) |\n"
        "| search overhead | `benchmarks/search_overhead.py` | ≤15 % | met: 10.2 % |\n"
        "| export | `benchmarks/export.py` | int8 ≤0.27× fp32 bytes; int8 acc within 0.2 pt; int8 latency ≤0.6× | size met (0.257–0.260× since 2026-12-02's shared quantisation vectors; w2a2 int4 weight-only file 0.173×, agreement 100 %); latency **not met on the 2026-12-02 CPU** (AVX2 only: a plain CNN through the standard converter runs 1.2–1.5× slower in int8 than fp32; the 2026-11-25 machine measured 0.27–0.32× for the same files); paper architecture: FP and w4a4 met on the holdout (+0.00), w2a2 **not met** (+1.35 pt, 93.6 % agreement: FP stem and projection adds); opt-in int8-exact variant (exact stem + zero_pad + exact tail; digits, 3 seeds, 597 images): agreement 99.50–100 % (w2a2 100 %), |Δ| ≤ 0.17 pt in every cell, but ±0.34 (one image) in some cells on the 297 holdout images alone; CIFAR-10 3 seeds (exact stem + shared proj BN + tail, 1,000 images): w2a2 100 % on every seed, Δ 0.0; w4a4 95.4–97.7 % (92.8–94.9 % without 2026-12-02's refined grids and int16 logits), |Δ| 0.1 / 0.3 / 0.7; w4a4 retrained with `exact_stem_step=12` + int16 pool: **Δ 0.00 / +0.20 / 0.00, agreement 98.2 / 99.6 / 99.1 % with float32 Keras and 100 % (3,000 of 3,000 images) with the same network in float64** — float32 Keras itself agrees only 98.2 / 99.6 / 99.1 % with float64; FP teacher 98.1–98.5 %; 0.276–0.278× (`shared_proj_bn` zero taps) |\n",
    ]
    for name, title, script in ORDER:
        p = res / name
        if not p.exists():
            continue
        body = p.read_text().strip()
        parts.append(f"\n---\n\n## {title}\n\n_Source: `{script}` → `benchmarks/results/{name}`_\n\n{body}\n")
    (root / "BENCHMARKS.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
