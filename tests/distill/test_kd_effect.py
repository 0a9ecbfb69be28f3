"""Does a short II-KD distillation on the embedded digits do what it optimises, and does it pay?

A trained ResNet-8 FP teacher, then the same 2-bit student (initialised from it, same seed, data
order, steps and recipe) trained twice: ``--kd none`` and ``--kd ii`` (default clip rule).

What is asserted: the distilled student is closer to the teacher than the vanilla student in the
measure II-KD optimises — the released II-KD loss (MHGD with the run's frozen heads + RKD + KD-SVD)
between student and teacher, in batches of 128 of the 897 held-back digits, is lower. It fails if
the KD gradient is lost (e.g. clipped to zero, detached taps, wrong sign).

Until 2026-12-03 the assertion was on the RKD term alone (logit geometry). Since the MHGD heads
use role-kd's He-scaled initialisation (issue 19; their initial attention logits are ≈5× the
Glorot ones), MHGD dominates the clipped KD gradient at this scale and the RKD term alone no longer
improves: measured 2026-12-03 (this test, seed 0): vanilla holdout 73.58 %, II-KD to teacher 9.434
(MHGD 3.570, RKD 3.671, SVD 2.193); II-KD student 66.89 %, 8.173 (MHGD 2.157, RKD 4.173, SVD
1.843). With the old Glorot heads the same run passed the RKD-only assertion (2026-12-02: RKD
3.196 vs 3.607, holdout −2.79 points).

What is *not* asserted, honestly: that the distilled student is more accurate. At this scale it is
not reliably so (with the released heads: −6.69 points, above). Measured 2026-11-25 on this
digits setup with the Glorot heads (II-KD minus vanilla, holdout points):
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


def _holdout_outputs(run_dir):
    """``([tap_1, …, tap_n, logits] as arrays over the holdout, labels, seed)`` of a run's model."""
    from rolekd_tf.augment.pipeline import make_eval_dataset
    from rolekd_tf.data import load_splits
    from rolekd_tf.models import feature_model
    from rolekd_tf.training import load_run_model, read_run_config

    cfg = read_run_config(run_dir)
    sp = load_splits(cfg.data.dataset, train_size=cfg.data.train_size, val_size=cfg.data.val_size,
                     holdout_size=cfg.data.holdout_size, seed=cfg.seed)
    fm = feature_model(load_run_model(run_dir))
    outs, ys = [], []
    for x, y in make_eval_dataset(sp.x_holdout, sp.y_holdout, sp.info, batch_size=300):
        outs.append([np.asarray(o) for o in fm(x, training=False)])
        ys.append(y.numpy())
    return [np.concatenate(o) for o in zip(*outs)], np.concatenate(ys), cfg.seed


def test_ii_kd_moves_the_student_towards_the_teacher(runs):
    import tensorflow as tf

    from rolekd_tf.distill.losses import IIKD, rkd_loss

    t, v, ii = runs
    t_outs, y, seed = _holdout_outputs(t)
    zt = t_outs[-1]
    # the II-KD objective the distiller optimised: same frozen MHGD heads (seeded by the run seed)
    iikd = IIKD([o.shape[-1] for o in t_outs[:-1]], heads=4, seed=seed)
    batches = [slice(i, i + RKD_BATCH) for i in range(0, len(y) - RKD_BATCH + 1, RKD_BATCH)]
    res = {}
    for name, d in (("vanilla", v), ("ii", ii)):
        s_outs, y2, _ = _holdout_outputs(d)
        z = s_outs[-1]
        np.testing.assert_array_equal(y, y2)  # same holdout images in the same order
        # Batch-wise, as it is optimised: one 897-row RKD builds an 897³ angle tensor (≈3 GB per
        # side; 18.5 GB worker peak with its intermediates, measured 2026-12-02).
        total = np.mean([float(rkd_loss(tf.constant(z[b]), tf.constant(zt[b]))[0]) for b in batches])
        terms = [iikd([tf.constant(o[b]) for o in s_outs], [tf.constant(o[b]) for o in t_outs]) for b in batches]
        m = json.loads((d / "metrics.json").read_text())
        res[name] = {"rkd": float(total), "acc": float(np.mean(z.argmax(1) == y)),
                     **{f"ii_{k}": float(np.mean([float(tm[k]) for tm in terms])) for k in ("kd", "mhgd", "rkd", "svd")},
                     "holdout_metric": m["final"]["holdout_accuracy"],
                     "kd_logged": m["history"].get("kd")}
    print(f"\nteacher acc {np.mean(zt.argmax(1) == y):.4f}; " + "; ".join(
        f"{k}: holdout acc {r['acc']:.4f}, RKD to teacher {r['rkd']:.3f}, II-KD to teacher {r['ii_kd']:.3f} "
        f"(mhgd {r['ii_mhgd']:.3f}, rkd {r['ii_rkd']:.3f}, svd {r['ii_svd']:.3f})" for k, r in res.items()))
    # the run's own holdout metric is the accuracy we recompute (same model, same images)
    for r in res.values():
        assert abs(r["acc"] - r["holdout_metric"]) < 1e-6
    assert res["ii"]["ii_kd"] < res["vanilla"]["ii_kd"], res
