"""Numerical guards end to end.

* KD losses stay finite through the real :class:`~rolekd_tf.distill.Distiller` train step on
  degenerate batches (constant images, one class, a batch of 2, all-zero inputs so every feature
  map is 0) — the per-loss unit tests are in tests/distill/test_losses.py and test_svd.py
  (``test_ii_gradients_finite_on_degenerate_maps``); the clip rule's no-division-by-zero is
  tests/distill/test_distiller.py::test_clip_rule_below_above_and_zero_task_grad.
* A run whose loss becomes NaN/inf stops with ONE line ``error: training diverged …``, exit 2,
  and keeps the last good checkpoint (and writes no model.keras).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.reliability._util import error_problems, read_json, run_tool


def _degenerate_batches():
    rng = np.random.default_rng(0)
    return {
        "constant_images": (np.full((8, 8, 8, 3), 0.7, np.float32), rng.integers(0, 5, 8).astype(np.int32)),
        "one_class": (rng.normal(size=(8, 8, 8, 3)).astype(np.float32), np.zeros(8, np.int32)),
        "batch_of_2": (rng.normal(size=(2, 8, 8, 3)).astype(np.float32), np.array([0, 1], np.int32)),
        "all_zero_maps": (np.zeros((4, 8, 8, 3), np.float32), np.array([0, 1, 2, 3], np.int32)),
    }


# soft/dml ignore `update`: one combination each, not a skipped second one
@pytest.mark.parametrize("kd,update", [(k, u) for k in ("ii", "soft", "rkd", "mhgd", "svd", "dml")
                                       for u in ("clip_to_task_grad", "weighted_sum")
                                       if not (k in ("soft", "dml") and u == "weighted_sum")]
                         + [("ii", "weighted_clip")])
def test_distiller_step_finite_on_degenerate_batches(kd, update):
    import keras
    import tensorflow as tf

    from rolekd_tf.distill import Distiller
    from tests.distill._tiny import tiny_model

    t, s = tiny_model(0, name="t"), tiny_model(1, name="s")
    d = Distiller(None if kd == "dml" else t, s, kd=kd, update=update, weight_decay=1e-4)
    d.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), jit_compile=False)
    d.optimizer.build(d.trainable_variables)
    bad = []
    for name, (x, y) in _degenerate_batches().items():
        logs = d.train_step((tf.constant(x), tf.constant(y)))
        vals = {k: float(np.asarray(v)) for k, v in logs.items() if np.asarray(v).size == 1}
        if not all(np.isfinite(list(vals.values()))):
            bad.append((name, vals))
        if not all(np.isfinite(w.numpy()).all() for w in s.trainable_variables):
            bad.append((name, "non-finite student weights"))
    assert not bad, bad


#: in range, but SGD with lr 10 and coupled L2 1 multiplies the weights by about −9 per step: the
#: loss overflows within a few epochs (measured: epoch 2) — no config key is outside its range
_DIVERGE = ["--set", "data.train_size=256", "--set", "data.val_size=128", "--set", "train.epochs=6",
            "--set", "train.batch_size=32", "--set", "model.name=resnet8", "--set", "train.lr=10",
            "--set", "train.weight_decay=1", "--quiet"]


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    base = tmp_path_factory.mktemp("diverge")
    run = base / "run"
    return run_tool("train", [*_DIVERGE, "--out", run], cwd=base), run


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(diverged):
    p, run = diverged
    assert not error_problems(p, "training diverged"), error_problems(p, "training diverged")
    assert p.returncode == 2
    meta = read_json(run / "checkpoints" / "state.json")
    k = meta["epoch"]
    assert 1 <= k < 6
    # the message names the checkpoint that exists, with its epoch, and the epoch that diverged
    assert f"in epoch {k + 1}," in p.stderr and f"(end of epoch {k}) is kept in" in p.stderr
    assert str(run / "checkpoints" / "state.npz") in p.stderr or "checkpoints/state.npz" in p.stderr
    # it lists the settings that scale the update instead of blaming one key
    assert "train.lr=10" in p.stderr and "train.weight_decay=1" in p.stderr
    with np.load(run / "checkpoints" / "state.npz") as z:
        arrays = [z[k] for k in z.files if k.startswith("v")]
    assert len(arrays) == meta["num_variables"]
    assert all(np.isfinite(a).all() for a in arrays), "the kept checkpoint holds non-finite weights"
    m = read_json(run / "metrics.json")
    assert m["finished"] is False and m["history"]["epoch"] == list(range(k))
    # the kept epochs trained on finite losses (their val metrics may already overflow)
    assert np.isfinite(m["history"]["loss"]).all()
    assert not (run / "model.keras").exists()


def test_divergence_before_the_first_checkpoint_says_there_is_none(tmp_path):
    # checkpoint_every=6: the only checkpoint would be written after the last epoch; the old
    # message pointed at checkpoints/state.npz, which did not exist
    run = tmp_path / "run"
    p = run_tool("train", [*_DIVERGE, "--set", "train.checkpoint_every=6", "--out", run], cwd=tmp_path)
    assert not error_problems(p, "training diverged"), error_problems(p, "training diverged")
    assert p.returncode == 2
    assert "no checkpoint was written" in p.stderr and "is kept in" not in p.stderr
    assert not (run / "checkpoints" / "state.npz").exists()
    assert not (run / "model.keras").exists()


def test_old_divergence_recipe_is_now_a_config_error(tmp_path):
    # lr_gamma=1e38 made the NaN (and was reported as "lower train.lr"); it is out of range now
    p = run_tool("train", ["--set", "train.lr_gamma=1e38", "--out", tmp_path / "run"], cwd=tmp_path)
    assert not error_problems(p, "train.lr_gamma"), error_problems(p, "train.lr_gamma")
    assert p.returncode == 2 and "(0, 1]" in p.stderr
    assert not (tmp_path / "run").exists()
