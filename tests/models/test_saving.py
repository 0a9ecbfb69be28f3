import numpy as np
import tensorflow as tf
import keras

import rolekd_tf  # noqa: F401
from rolekd_tf.models import build_model, feature_model, tap_layer_names


def test_keras_round_trip_without_custom_objects(tmp_path):
    rng = np.random.default_rng(0)
    m = build_model("resnet8", num_classes=5, w_bits=2, a_bits=4, input_shape=(8, 8, 3))
    for v in m.weights:
        val = rng.normal(size=v.shape).astype(np.float32) * 0.3
        v.assign(np.abs(val) + 0.5 if "variance" in v.path else val)
    path = tmp_path / "m.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    x = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), m(x, training=False).numpy())
    assert loaded.get_layer("stage1_block1_conv1").w_bits == 2
    assert loaded.get_layer("stage1_block1_in_aq").a_bits == 4
    assert tap_layer_names(loaded) == tap_layer_names(m)
    outs = feature_model(loaded)(x, training=False)
    assert len(outs) == 4
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loaded(x, training=True) ** 2)
    grads = tape.gradient(loss, loaded.trainable_variables)
    conv_grad = grads[[v.path for v in loaded.trainable_variables].index(
        loaded.get_layer("stage2_block1_conv1").kernel.path)]
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(conv_grad.numpy()).max() > 0
