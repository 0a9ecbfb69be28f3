"""Tiny functional models with the tap contract (tap_1..tap_n, logits) for fast distill tests."""
import keras
import numpy as np


def tiny_model(seed, channels=(4, 6, 8), num_classes=5, size=8, name="m"):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = inp
    for i, c in enumerate(channels):
        x = keras.layers.Conv2D(c, 3, padding="same", strides=1 if i == 0 else 2, use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name=f"tap_{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=name)


def tiny_data(n=32, size=8, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, size, size, 3)).astype("float32"), rng.integers(0, num_classes, n).astype("int32")
