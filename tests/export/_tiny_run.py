"""A small trained run directory for the export tests (model.keras + config.yaml)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def make_run(run_dir, *, w_bits=2, a_bits=2, model="resnet20", epochs=3, train_size=1200,
             val_size=400, holdout_size=0, batch_size=64, seed=0, lr=0.05, verbose=0, variant=None):
    """Train ``model`` briefly on embedded:digits (plain ``fit``) and write a run directory.
    ``variant``: the config's ``int8`` section (:class:`~rolekd_tf.config.Int8Exactness` fields;
    ``stem`` → the model is trained on (pixels − 128)/64)."""
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.config import config_from_dict, save_config
    from rolekd_tf.data import load_splits
    from rolekd_tf.fileio import save_model_atomic
    from rolekd_tf.models import build_model, input_normalisation

    run_dir = Path(run_dir)
    cfg = config_from_dict({
        "name": "export-test", "seed": seed,
        "data": {"dataset": "embedded:digits", "train_size": train_size, "val_size": val_size,
                 "holdout_size": holdout_size},
        "model": {"name": model, "w_bits": w_bits, "a_bits": a_bits},
        "int8": dict(variant or {}),
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr},
    })
    s = load_splits("embedded:digits", train_size=train_size, val_size=val_size,
                    holdout_size=holdout_size, seed=seed)
    mean, std = (np.asarray(v, np.float32) for v in input_normalisation(cfg.int8.stem, s.info.mean, s.info.std))
    norm = lambda x: ((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)  # noqa: E731
    keras.utils.set_random_seed(seed)
    m = build_model(model, num_classes=s.info.num_classes, w_bits=w_bits, a_bits=a_bits,
                    input_shape=s.info.image_shape, int8=cfg.int8)
    m.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    xt = norm(s.x_train)
    m.fit(xt, s.y_train, batch_size=batch_size, epochs=epochs, verbose=verbose, shuffle=True)
    # Short runs leave BN moving statistics far from the data (momentum 0.99): re-estimate them.
    set_bn_statistics(m, xt)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    save_model_atomic(m, run_dir / "model.keras")
    return run_dir, s


def recalibrate_bn(model, x, *, passes: int = 30, batch: int = 256, momentum: float = 0.8) -> None:
    """Re-estimate every BN layer's moving statistics from ``passes`` training-mode forward passes
    over seeded batches of ``batch`` images of ``x`` (all of ``x``, in order, if it has no more)."""
    import keras
    import tensorflow as tf

    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    old = [l.momentum for l in bns]
    for l in bns:
        l.momentum = momentum
    # One traced forward instead of 30 eager ones (eager ResNet-20 passes were ~1/3 of each
    # fixture's time); the same batches in the same order, so the same statistics up to float order.
    step = tf.function(lambda xb: model(xb, training=True))
    rng = np.random.default_rng(0)
    for _ in range(passes):
        idx = np.arange(len(x)) if batch >= len(x) else rng.choice(len(x), size=batch, replace=False)
        step(tf.constant(x[idx]))
    for l, mo in zip(bns, old):
        l.momentum = mo


def set_bn_statistics(model, x, *, max_images: int = 1024) -> None:
    """Set every BN layer's moving mean/variance to its batch statistics over ``x`` (up to
    ``max_images`` of them, seeded draw) in one training-mode forward pass (momentum 0).

    The population statistics that :func:`recalibrate_bn`'s default 30 momentum-0.8 passes
    estimate, at 1/30 of the cost (those passes were ~half of each export-test fixture's time,
    2026-12-02). The benchmarks keep the default, which their published figures were measured with."""
    recalibrate_bn(model, x, passes=1, batch=max_images, momentum=0.0)
