"""Step time of the II-KD Distiller vs a plain student step (ResNet-20 W2A2 ← ResNet-20 FP).

Usage: python benchmarks/distill_step.py [--batch 128] [--rounds 7] [--steps 4] [--out benchmarks/results/distill_step.md]

Interleaved rounds in ONE process: each round times ``--steps`` compiled steps of every variant
(order rotated per round) and keeps the fastest step of the round (the machine is shared, so the
minimum is the least-contended estimate); the ratio variant/plain is computed per round and
reported as median and IQR over rounds, plus the ratio of the overall minima.

Peer (issue 22): ``keras.distillation.Distiller`` (Keras >= 3.12) with ``LogitsDistillation(T=3)``
against our Distiller with ``kd=soft`` on the same teacher, student, batch and optimizer, weight
decay off in ours (Keras' has none) and the same CE/KD mixing (ours ``(1-0.3)·CE + 0.3·KD``, theirs
``student_loss_weight=0.7``; theirs multiplies the KL by T², a constant factor that costs nothing).
Target: ours <= 1.05x theirs. Cost breakdown (same rounds): teacher forward alone, the decompositions
alone (teacher top-1 + student top-4, all taps, forward), the KD losses' forward+backward on
fixed taps, and the II-KD step with the paper's single-backward ``weighted_sum`` rule (the
difference to ``clip_to_task_grad`` is the cost of the second backward pass).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rolekd_tf.distill import Distiller  # noqa: E402
from rolekd_tf.distill import losses as L  # noqa: E402
from rolekd_tf.models import build_model, feature_model  # noqa: E402


def make_step(d):
    d.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-5), jit_compile=False)
    return tf.function(d.train_step)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    keras.utils.set_random_seed(0)
    teacher = build_model("resnet20", num_classes=10)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(a.batch, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, a.batch).astype("int32"))

    def student():
        return build_model("resnet20", num_classes=10, w_bits=2, a_bits=2)

    plain = make_step(Distiller(None, student(), kd="none", weight_decay=1e-5))
    ii_clip = make_step(Distiller(teacher, student(), kd="ii", update="clip_to_task_grad", weight_decay=1e-5))
    ii_ws = make_step(Distiller(teacher, student(), kd="ii", update="weighted_sum", weight_decay=1e-5))
    t_fm, s_fm = feature_model(teacher), feature_model(student())
    t_taps = [tf.constant(t) for t in t_fm(x, training=False)]
    s_taps = [tf.constant(t) for t in s_fm(x, training=False)]
    ii = L.IIKD([t.shape[-1] for t in t_taps[:-1]])

    teacher_fwd = tf.function(lambda: t_fm(x, training=False)[-1])
    decomp = tf.function(lambda: tf.add_n([tf.reduce_sum(v) for vs in L.decompose(s_taps[:-1], t_taps[:-1]) for v in vs]))
    s_vars = [tf.Variable(t) for t in s_taps]

    @tf.function
    def kd_fwd_bwd():
        with tf.GradientTape() as tape:
            out = ii([v for v in s_vars], t_taps)["kd"]
        return tape.gradient(out, s_vars)

    soft = make_step(Distiller(teacher, student(), kd="soft", weight_decay=0.0, temperature=3.0,
                               soft_alpha=0.3))
    peer = keras_distiller(teacher, student())

    variants = {
        "plain step (kd=none)": lambda: plain((x, y)),
        "soft-label KD step (ours, kd=soft)": lambda: soft((x, y)),
        "II-KD step (clip_to_task_grad)": lambda: ii_clip((x, y)),
        "II-KD step (weighted_sum, 1 backward)": lambda: ii_ws((x, y)),
        "teacher forward alone": teacher_fwd,
        "decompositions alone (fwd, 3 taps x 2 nets)": decomp,
        "KD losses fwd+bwd on fixed taps": kd_fwd_bwd,
    }
    if peer is not None:
        variants["keras.distillation.Distiller (LogitsDistillation)"] = lambda: peer((x, y))
    names = list(variants)
    for n in names:  # trace + warm up
        for _ in range(2):
            _sync(variants[n]())
    times = {n: [] for n in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            ts = []
            for _ in range(a.steps):
                t0 = time.perf_counter()
                _sync(variants[n]())
                ts.append(time.perf_counter() - t0)
            times[n].append(float(np.min(ts)))  # least-contended step of the round
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{n.split(' (')[0]}={times[n][-1]*1e3:.0f}ms" for n in names),
              flush=True)
    base = np.array(times[names[0]])
    lines = [
        f"## distill_step — {datetime.date.today().isoformat()}",
        "",
        f"Command: `python benchmarks/distill_step.py --batch {a.batch} --rounds {a.rounds} --steps {a.steps}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), TF {tf.__version__}, "
        f"Keras {keras.__version__}, no XLA. ResNet-20 W2A2 student, ResNet-20 FP teacher, batch {a.batch}. "
        f"Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
        "| variant | median ms/step | ratio to plain (median over rounds) | ratio IQR | ratio of minima |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        ratio = np.array(times[n]) / base
        q1, q3 = np.percentile(ratio, [25, 75])
        rmin = np.min(times[n]) / np.min(base)
        lines.append(f"| {n} | {np.median(times[n])*1e3:.0f} | {np.median(ratio):.2f} | {q1:.2f}–{q3:.2f} | {rmin:.2f} |")
    if peer is not None:
        ours, theirs = np.array(times["soft-label KD step (ours, kd=soft)"]), np.array(
            times["keras.distillation.Distiller (LogitsDistillation)"])
        r = ours / theirs
        q1, q3 = np.percentile(r, [25, 75])
        lines += ["", f"Ours (kd=soft) / keras.distillation.Distiller, same soft-label loss: median "
                      f"{np.median(r):.2f} (IQR {q1:.2f}–{q3:.2f}, ratio of minima "
                      f"{np.min(ours) / np.min(theirs):.2f}); target <= 1.05."]
    else:
        lines += ["", f"keras.distillation is not in Keras {keras.__version__} (needs >= 3.12): peer not timed."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")
    return times


def keras_distiller(teacher, student):
    """Keras' own Distiller on the same pair (None when this Keras has no ``keras.distillation``)."""
    try:
        from keras.distillation import Distiller as KerasDistiller, LogitsDistillation
    except ImportError:
        return None
    d = KerasDistiller(teacher=teacher, student=student,
                       distillation_losses=LogitsDistillation(temperature=3.0),
                       student_loss_weight=0.7)
    d.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-5),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    return tf.function(d.train_step)


def _sync(out):
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


if __name__ == "__main__":
    main()
