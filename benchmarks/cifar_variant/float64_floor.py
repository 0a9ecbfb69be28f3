"""How far float32 Keras itself is from exact arithmetic: the run's model rebuilt in float64 (same
weights) against the float32 Keras model and the exported TFLite files, top-1 agreement on the
export's 1,000 seeded holdout images. A low-bit model with many pre-activations near a threshold
flips classes under float32 rounding alone; no exported file can agree with float32 Keras more
reliably than float32 Keras agrees with exact arithmetic.

    python benchmarks/cifar_variant/float64_floor.py RUN_DIR [RUN_DIR ...]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import rolekd_tf  # noqa: E402,F401
from rolekd_tf.config import load_config  # noqa: E402
from rolekd_tf.data import load_splits  # noqa: E402
from rolekd_tf.export import graph, tflite as T  # noqa: E402
from rolekd_tf.export.run import evaluation_subset  # noqa: E402
from rolekd_tf.export.reference import float64_logits  # noqa: E402
from rolekd_tf.training import load_run_model  # noqa: E402


def main(runs):
    for rd in map(Path, runs):
        cfg = load_config(rd / "config.yaml")
        model = load_run_model(rd)
        d = cfg.data
        s = load_splits(d.dataset, train_size=d.train_size, val_size=d.val_size, holdout_size=d.holdout_size,
                        seed=cfg.seed, cache_dir=d.cache_dir)
        sel = evaluation_subset(len(s.x_holdout), 1000, 0)  # the export's default images
        x, y = s.x_holdout[sel], s.y_holdout[sel]
        mean, std = graph.model_normalisation(model, s.info.mean, s.info.std)
        l32 = np.asarray(graph.wrap_with_preprocessing(model, mean, std).predict(x.astype(np.float32), verbose=0))
        l64 = float64_logits(model, x, mean, std)
        agree = lambda u, v: 100.0 * float(np.mean(u.argmax(1) == v.argmax(1)))  # noqa: E731
        cols = [f"Keras f32 vs f64 {agree(l32, l64):.1f} %"]
        for name in ("model_fp32.tflite", "model_int8.tflite"):
            p = rd / "export" / name
            if p.exists():
                lt = T.run(T.interpreter(p), x.astype(np.float32), batch=64)
                cols.append(f"{name}: vs f32 {agree(lt, l32):.1f} %, vs f64 {agree(lt, l64):.1f} %")
        acc = lambda l: 100.0 * float(np.mean(l.argmax(1) == y))  # noqa: E731
        print(f"{rd}: " + " | ".join(cols) + f" | accuracy f32 {acc(l32):.1f} %, f64 {acc(l64):.1f} %", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
