import numpy as np
import pytest

import rolekd_tf  # noqa: F401
from rolekd_tf.errors import CheckpointError
from rolekd_tf.models import build_model, copy_trainable_weights


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    for v in model.weights:
        val = rng.normal(size=v.shape).astype(np.float32)
        if "variance" in v.path:
            val = np.abs(val) + 0.5
        v.assign(val)


def test_copy_fp_to_w2a2_exact_and_bn_stats_fresh():
    src = build_model("resnet8", num_classes=10, input_shape=(8, 8, 3))
    dst = build_model("resnet8", num_classes=10, w_bits=2, a_bits=2, input_shape=(8, 8, 3))
    _randomise(src, 0)
    src.trainable = False  # a frozen teacher still provides its weights
    n = copy_trainable_weights(src, dst)
    src.trainable = True
    assert n == len(src.trainable_weights) == len(dst.trainable_weights)
    for s, d in zip(src.trainable_weights, dst.trainable_weights):
        assert s.path == d.path
        np.testing.assert_array_equal(s.numpy(), d.numpy())
    for d in dst.non_trainable_weights:  # moving mean 0 / variance 1: fresh
        expect = 1.0 if "variance" in d.path else 0.0
        np.testing.assert_array_equal(d.numpy(), np.full(d.shape, expect, np.float32))
    assert len(dst.non_trainable_weights) > 0


def test_copy_rejects_other_class_count():
    src = build_model("resnet8", num_classes=10, input_shape=(8, 8, 3))
    dst = build_model("resnet8", num_classes=100, input_shape=(8, 8, 3))
    with pytest.raises(CheckpointError, match=r"'logits'.*\(64, 10\).*\(64, 100\)"):
        copy_trainable_weights(src, dst)


def test_copy_rejects_other_architecture():
    src = build_model("resnet8", num_classes=10, input_shape=(8, 8, 3))
    dst = build_model("resnet20", num_classes=10, input_shape=(8, 8, 3))
    with pytest.raises(CheckpointError, match="same architecture"):
        copy_trainable_weights(src, dst)
    wide = build_model("wrn-10-2", num_classes=10, input_shape=(8, 8, 3))
    narrow = build_model("wrn-10-1", num_classes=10, input_shape=(8, 8, 3))
    with pytest.raises(CheckpointError, match=r"'stage1_block1_conv1' with shapes \[\(3, 3, 16, 32\)\].*\[\(3, 3, 16, 16\)\]"):
        copy_trainable_weights(wide, narrow)
