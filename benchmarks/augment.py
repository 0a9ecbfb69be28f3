"""Augmentation throughput: vectorised TF apply_policy vs PBA's per-image PIL path, and the
training pipeline's delivery rate vs a ResNet-20 train step's consumption rate.

    ROLEKD_CIFAR10_TAR=/work/shared/data/cifar10-jpeg-train.tar.gz \
        .venv/bin/python benchmarks/augment.py [--out benchmarks/results/augment.md]

The machine is shared (2 cores, other jobs): every measurement is taken in ``--rounds``
interleaved rounds (TF, PBA, lean PIL, then pipeline, trainer) and the median per-round rate is
reported, with the load average before / after.

What each side includes (dense policy: all 30 slots p = 1, level 5; batch 128, 32×32):

* TF: ``apply_policy`` on a float32 [128, 32, 32, 3] batch in 0..255 inside a ``tf.function``
  (the policy draw, both op steps, ``.numpy()`` of the result).
* PBA per image (``pil_reference.pba_apply_policy``): what PBA's loader does per image — the
  cap draw, and for cap > 0: normalised float → uint8 RGBA ``PIL.Image`` (``pil_wrap``),
  ``random.shuffle`` of the 30 slots, coin flips, the PIL ops as PBA calls them (RGB↔RGBA
  converts for ImageOps, per-pixel Python Cutout), ``np.array(img.getdata())`` back to a
  normalised float image (``pil_unwrap``). Nothing else (no pad/crop/flip/Cutout16).
* lean PIL per image (``pil_reference.pil_apply_policy``, the tests' oracle): uint8 RGB in,
  the same PIL ops, ``np.array`` out — no float↔uint8 normalisation, no RGBA, no ``getdata``.
  Leaner than PBA; shown so the two references can be told apart.
* tf.data map, ours vs Keras (issue 22): the same 4,000 real images as float32 0..255 in a
  ``tf.data`` pipeline (``map(num_parallel_calls=AUTOTUNE)``, prefetch), a fresh iterator per round:
  our ``apply_policy`` with the dense PBA policy on batches of 128 (per-sample ops: every image
  draws its own 0–2 ops, probabilities and levels from the policy) against
  ``keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5)`` (2 random ops per
  call, magnitude 0.5 of its range ~ our level 5 of 0..9), once mapped over batches of 128 and
  once per image before batching. Keras' layer applies the *same* ops to every image of a batch
  when mapped batch-wise; per image it draws per image, which is what PBA's policies need.
* pipeline: a fresh ``make_train_dataset`` iterator per round (start-up and 5 warm-up batches
  untimed), dropped after the round, so no prefetching runs in the background of the other
  measurements and no buffer filled meanwhile inflates the next round.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rolekd_tf.augment import apply as ap  # noqa: E402
from rolekd_tf.augment import pipeline as pl  # noqa: E402
from rolekd_tf.augment.policy import LAYOUT_SHAPE, LEVEL, PROB, PROB_MAX  # noqa: E402
from rolekd_tf.fileio import atomic_write_text  # noqa: E402
from tests.augment import pil_reference as ref  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FILL = np.array(MEAN) * 255.0
BATCH = 128


class _Info:
    mean, std = MEAN, STD


def dense_policy(level=5):
    """Every slot at probability 1 (``PROB_MAX``) and level ``level``: int32 [60]."""
    v = np.zeros(LAYOUT_SHAPE, np.int32)
    v[..., PROB], v[..., LEVEL] = PROB_MAX, level
    return v.reshape(-1)


def load_images(n):
    path = os.environ.get("ROLEKD_CIFAR10_TAR")
    if path and os.path.exists(path):
        x = ref.read_tar_images(path, n)
        return x, "real CIFAR-10 JPEGs ($ROLEKD_CIFAR10_TAR)"
    return (np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            "random uint8 images (ROLEKD_CIFAR10_TAR unset)")


class _Rate:
    """Interleaved timing: ``step()`` runs one round and records its rate."""

    def __init__(self, fn, units):
        self.fn, self.units, self.rates = fn, units, []

    def step(self):
        t = time.perf_counter()
        self.fn()
        self.rates.append(self.units / (time.perf_counter() - t))

    @property
    def median(self):
        return float(np.median(self.rates))


def make_tf(x, iters):
    policy = tf.constant(dense_policy())
    xb = tf.constant(x[:BATCH], tf.float32)
    f = tf.function(lambda s: ap.apply_policy(xb, policy, fill=FILL, seed=s))
    for i in range(5):
        f(tf.constant([i, 0])).numpy()
    calls = iter(range(10 ** 9))

    def run():
        for _ in range(iters):
            f(tf.constant([next(calls), 1])).numpy()
    return _Rate(run, iters * BATCH)


def make_pba(x, n):
    xn = (x.astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)   # PBA: normalised
    pyrandom = random.Random(0)
    np.random.seed(0)
    pol = dense_policy()
    idx = iter(range(10 ** 9))

    def run():
        for _ in range(n):
            ref.pba_apply_policy(xn[next(idx) % len(xn)], pol, mean=np.array(MEAN),
                                 std=np.array(STD), pyrandom=pyrandom)
    return _Rate(run, n)


def make_pil(x, n):
    rng = np.random.default_rng(0)
    pol = dense_policy()
    idx = iter(range(10 ** 9))

    def run():
        for _ in range(n):
            ref.pil_apply_policy(x[next(idx) % len(x)], pol, fill=FILL, rng=rng)
    return _Rate(run, n)


def _dataset_rate(ds, batches, units_per_batch):
    """A ``_Rate`` whose round times ``batches`` batches of ``ds`` (``units_per_batch`` units each).

    A fresh iterator per round, dropped afterwards: a long-lived one keeps prefetching during
    the other measurements (stealing their CPU) and its full buffer then makes the next round
    look impossibly fast. Its start-up and 5 warm-up batches are not timed."""
    rate = _Rate(None, batches * units_per_batch)

    def step():
        it = iter(ds)
        for _ in range(5):
            next(it)
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        rate.rates.append(batches * units_per_batch / (time.perf_counter() - t))
        del it
    rate.step = step
    return rate


def make_pipeline(x, batches):
    """Rate (batches/s) of the product's training pipeline with a dense policy."""
    table = pl.PolicyTable(10)
    table.assign_schedule(np.stack([dense_policy()] * 10))
    ds = pl.make_train_dataset(x, np.zeros(len(x), np.int32), _Info, batch_size=BATCH, seed=0,
                               policy_table=table)
    it = iter(ds)
    for _ in range(5):
        next(it)
    del it
    return _dataset_rate(ds, batches, 1)


def make_map(x, batches, fn, *, per_image: bool):
    """Rate (images/s) of ``batches`` batches of a ``tf.data`` map: ``fn(images float32 [B|1,...],
    index)`` mapped before (``per_image``) or after batching."""
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(x, tf.float32)).repeat()
    if per_image:
        ds = ds.enumerate().map(lambda i, im: fn(im, i), num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH)
    else:
        ds = ds.batch(BATCH).enumerate().map(lambda i, b: fn(b, i), num_parallel_calls=tf.data.AUTOTUNE)
    rate = _dataset_rate(ds.prefetch(2), batches, BATCH)
    rate.step()  # trace + warm-up round, not recorded
    rate.rates.clear()
    return rate


def make_map_ours(x, batches):
    policy = tf.constant(dense_policy())
    return make_map(x, batches, lambda b, i: ap.apply_policy(b, policy, fill=FILL,
                                                             seed=tf.stack([i, tf.constant(2, tf.int64)])),
                    per_image=False)


def make_map_keras(x, batches, *, per_image):
    import keras

    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=0)
    return make_map(x, batches, lambda b, i: layer(b, training=True), per_image=per_image)


def make_trainer(steps):
    import keras

    try:
        from rolekd_tf.models import build_model

        model = build_model("resnet20", num_classes=10)
        which = "rolekd_tf.models.build_model('resnet20', num_classes=10)"
    except Exception as exc:  # noqa: BLE001 — fall back to an inline ResNet-20
        which = f"inline Keras ResNet-20 (build_model unavailable: {type(exc).__name__})"
        model = _inline_resnet20()
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xb = np.random.default_rng(0).normal(size=(BATCH, 32, 32, 3)).astype(np.float32)
    yb = np.random.default_rng(1).integers(0, 10, BATCH).astype(np.int32)
    for _ in range(3):
        model.train_on_batch(xb, yb)

    def run():
        for _ in range(steps):
            model.train_on_batch(xb, yb)
    return _Rate(run, steps), which


def _inline_resnet20():
    import keras
    from keras import layers

    inp = keras.Input((32, 32, 3))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3, padding="same")(inp)))
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = layers.Conv2D(width, 3, stride, padding="same", use_bias=False)(h)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            y = layers.BatchNormalization()(layers.Conv2D(width, 3, padding="same",
                                                          use_bias=False)(y))
            if stride != 1 or h.shape[-1] != width:
                h = layers.BatchNormalization()(layers.Conv2D(width, 1, stride,
                                                              use_bias=False)(h))
            h = layers.ReLU()(layers.Add()([h, y]))
    out = layers.Dense(10)(layers.GlobalAveragePooling2D()(h))
    return keras.Model(inp, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                 "augment.md"))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--tf-iters", type=int, default=8, help="batches per round")
    p.add_argument("--pil-images", type=int, default=256, help="images per round (each PIL side)")
    p.add_argument("--pipeline-batches", type=int, default=40, help="batches per round")
    p.add_argument("--train-steps", type=int, default=3, help="steps per round")
    p.add_argument("--map-batches", type=int, default=10, help="batches per round (tf.data map rows)")
    args = p.parse_args(argv)

    x, source = load_images(4000)
    load0 = os.getloadavg()
    t_tf = make_tf(x, args.tf_iters)
    t_pba, t_pil = make_pba(x, args.pil_images), make_pil(x, args.pil_images)
    t_pipe = make_pipeline(x, args.pipeline_batches)
    t_train, which = make_trainer(args.train_steps)
    t_mo = make_map_ours(x, args.map_batches)
    t_kb = make_map_keras(x, args.map_batches, per_image=False)
    t_ki = make_map_keras(x, args.map_batches, per_image=True)
    for _ in range(args.rounds):
        for t in (t_tf, t_pba, t_pil, t_pipe, t_train, t_mo, t_kb, t_ki):
            t.step()
    load1 = os.getloadavg()
    tf_rate, pba_rate, pil_rate = t_tf.median, t_pba.median, t_pil.median
    pipe_rate, train_rate = t_pipe.median, t_train.median
    spread = lambda t: f"{min(t.rates):,.0f}–{max(t.rates):,.0f}"  # noqa: E731

    lines = [
        f"## Augmentation benchmark — {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        f"Command: `ROLEKD_CIFAR10_TAR=… .venv/bin/python benchmarks/augment.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip() + "",
        f"Host: {platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, XLA for the "
        f"op stages: XLA; load average {load0[0]:.1f} → "
        f"{load1[0]:.1f} (shared machine: absolute numbers are noisy). {args.rounds} "
        f"interleaved rounds, medians (min–max over rounds in brackets).",
        f"Images: {source}, {len(x)} images. Policy: all 30 slots prob 10, level 5 "
        f"(dense: 80 % of images get 1–2 ops). Batch {BATCH}. What each side includes: see "
        f"the docstring of benchmarks/augment.py.",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| TF `apply_policy` (tf.function, CPU, batch {BATCH}) | {tf_rate:,.0f} img/s "
        f"({spread(t_tf)}) |",
        f"| PBA per image (`pba_apply_policy`: float→uint8 RGBA PIL, PIL ops, getdata→float) | "
        f"{pba_rate:,.0f} img/s ({spread(t_pba)}) |",
        f"| lean PIL per image (`pil_apply_policy`: uint8 in/out, test oracle) | "
        f"{pil_rate:,.0f} img/s ({spread(t_pil)}) |",
        f"| **TF / PBA per image** | **{tf_rate / pba_rate:.1f}×** (target ≥ 10×) |",
        f"| TF / lean PIL | {tf_rate / pil_rate:.1f}× |",
        f"| pipeline delivery (`make_train_dataset`, policy + pad/crop/flip/Cutout16 + "
        f"normalise) | {pipe_rate:.1f} batches/s ({pipe_rate * BATCH:,.0f} img/s) |",
        f"| ResNet-20 train step consumption ({which}) | {train_rate:.2f} steps/s |",
        f"| **pipeline / trainer** | **{pipe_rate / train_rate:.1f}×** (target ≥ 20×) |",
        f"| tf.data map: ours, `apply_policy` per batch (per-sample PBA policy) | "
        f"{t_mo.median:,.0f} img/s ({spread(t_mo)}) |",
        f"| tf.data map: `keras.layers.RandAugment` per batch (same ops for the whole batch) | "
        f"{t_kb.median:,.0f} img/s ({spread(t_kb)}) |",
        f"| tf.data map: `keras.layers.RandAugment` per image (ops drawn per image) | "
        f"{t_ki.median:,.0f} img/s ({spread(t_ki)}) |",
        f"| **ours / Keras RandAugment per image** | **{t_mo.median / t_ki.median:.2f}×** (target ≥ 1.0×) |",
        f"| ours / Keras RandAugment per batch | {t_mo.median / t_kb.median:.2f}× |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    old = open(args.out).read() if os.path.exists(args.out) else "# Benchmark results: augmentation\n\n"
    atomic_write_text(args.out, old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
