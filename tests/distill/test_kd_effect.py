"""Does a short II-KD distillation on the embedded digits do what it optimises, and does it pay?

A trained ResNet-8 FP teacher, then the same 2-bit student (initialised from it, same seed, data
order, steps and recipe) trained twice: ``--kd none`` and ``--kd ii`` (default clip rule).

What is asserted: the distilled student's logit geometry is closer to the teacher's than the
vanilla student's — the released II-KD's RKD term (distance + angle on L2-normalised logits) between
student and teacher, measured in batches of 128 of the 897 held-back digits, is lower. That is
the behaviour KD is supposed to produce, and it fails if the KD gradient is lost (e.g. clipped to
zero, detached taps, wrong sign).

What is *not* asserted, honestly: that the distilled student is more accurate. At this scale it is
not reliably so. Measured 2026-11-25 on this digits setup (II-KD minus vanilla, holdout points):
this test −2.00 (73.36 vs 75.36 %; RKD over all 897 at once, as it then was, 2.99 vs 4.86;
2026-12-02, batch-wise: −2.79, 72.80 vs 75.59 %, RKD 3.196 vs 3.607); with a 20-epoch teacher and
Cutout 8: −0.56 (4 student epochs, seed 0), −0.89 (8 epochs, seed 0), +2.56 (4 epochs, seed 1) —
the RKD distance was lower in all four runs; ±1.4 points is the standard error of one
897-image accuracy. The accuracy gain shows at larger scale: the CPU reproduction on real CIFAR-10 (README, 3 seeds) gives +1.21 points at
2 bits and +0.83 at 4 bits (5 of 6 seed pairs positive), the digits demo +1.67. The test prints
both accuracies so a run records them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

BASE = ["data.train_size=600", "data.val_size=300", "data.holdout_size=897", "model.name=resnet8",
        "augment.cutout=0", "train.batch_size=50"]
CFG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
STUDENT = ["model.w_bits=2", "model.a_bits=2", "train.optimizer=adam", "train.lr=0.002",
           "train.weight_decay=1e-5", "train.epochs=4"]
RKD_BATCH = 128  # 7 full batches of the 897 holdout digits


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rolekd_tf.config import load_config
    from rolekd_tf.training import run_training

    out = tmp_path_factory.mktemp("kd_effect")
    t = out / "teacher"
    run_training(load_config(CFG, BASE + ["train.epochs=12"]), t, verbose=0)
    v, ii = out / "vanilla", out / "ii"
    run_training(load_config(CFG, BASE + STUDENT + ["distill.kd=none"]), v, init=str(t), verbose=0)
    run_training(load_config(CFG, BASE + STUDENT + ["distill.kd=ii"]), ii, init=str(t),
                 teacher=str(t), verbose=0)
    return t, v, ii


def _holdout_logits(run_dir):
    from rolekd_tf.augment.pipeline import make_eval_dataset
    from rolekd_tf.data import load_splits
    from rolekd_tf.training import load_run_model, read_run_config

    cfg = read_run_config(run_dir)
    sp = load_splits(cfg.data.dataset, train_size=cfg.data.train_size, val_size=cfg.data.val_size,
                     holdout_size=cfg.data.holdout_size, seed=cfg.seed)
    model = load_run_model(run_dir)
    zs, ys = [], []
    for x, y in make_eval_dataset(sp.x_holdout, sp.y_holdout, sp.info, batch_size=300):
        z = model(x, training=False)
        zs.append(np.asarray(z["logits"] if isinstance(z, dict) else z))
        ys.append(y.numpy())
    return np.concatenate(zs), np.concatenate(ys)


def test_ii_kd_moves_the_student_towards_the_teacher(runs):
    import tensorflow as tf

    from rolekd_tf.distill.losses import rkd_loss

    t, v, ii = runs
    zt, y = _holdout_logits(t)
    res = {}
    for name, d in (("vanilla", v), ("ii", ii)):
        z, y2 = _holdout_logits(d)
        np.testing.assert_array_equal(y, y2)  # same holdout images in the same order
        # Batch-wise, as it is optimised: one 897-row RKD builds an 897³ angle tensor (≈3 GB per
        # side; 18.5 GB worker peak with its intermediates, measured 2026-12-02).
        total = np.mean([float(rkd_loss(tf.constant(z[i:i + RKD_BATCH]), tf.constant(zt[i:i + RKD_BATCH]))[0])
                         for i in range(0, len(z) - RKD_BATCH + 1, RKD_BATCH)])
        m = json.loads((d / "metrics.json").read_text())
        res[name] = {"rkd": float(total), "acc": float(np.mean(z.argmax(1) == y)),
                     "holdout_metric": m["final"]["holdout_accuracy"],
                     "kd_logged": m["history"].get("kd")}
    print(f"\nteacher acc {np.mean(zt.argmax(1) == y):.4f}; " + "; ".join(
        f"{k}: holdout acc {r['acc']:.4f}, RKD to teacher {r['rkd']:.3f}" for k, r in res.items()))
    # the run's own holdout metric is the accuracy we recompute (same model, same images)
    for r in res.values():
        assert abs(r["acc"] - r["holdout_metric"]) < 1e-6
    assert res["ii"]["rkd"] < res["vanilla"]["rkd"], res
