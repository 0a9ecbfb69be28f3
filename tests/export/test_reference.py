"""rolekd_tf.export.reference: the float64 twin of a Keras model."""
import numpy as np
import pytest


def test_float64_twin_matches_and_is_float64():
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.export.reference import float64_logits, float64_twin
    from rolekd_tf.config import Int8Exactness
    from rolekd_tf.models import build_model

    # A fixed init: some random inits of this 4-bit int8-exact net put many pre-activations on a
    # threshold in exact arithmetic (integer stem sums), where float32 and float64 then round most
    # rows differently (measured: 7 of 8 rows after other tests had drawn from the global RNG).
    keras.utils.set_random_seed(0)
    m = build_model("resnet20", num_classes=10, w_bits=4, a_bits=4,
                    int8=Int8Exactness(stem=True, stem_step=4, shortcut="zero_pad", tail=True))
    twin = float64_twin(m)
    assert {w.dtype for w in twin.weights} == {"float64"}
    assert twin.get_layer("stem_conv").int8_step == 4 and twin.count_params() == m.count_params()
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    mean, std = (0.5,) * 3, (0.25,) * 3
    l64 = float64_logits(m, x, mean, std)
    assert l64.dtype == np.float64 and l64.shape == (8, 10)
    l32 = np.asarray(m((x / 255.0 - 0.5) / 0.25, training=False))
    # A 4-bit activation whose float32 value lies within float32 rounding of a threshold takes the
    # other level in float64 (about one such activation per image in ResNet-20, CPU-dependent), and
    # that row's logits then move by far more than the tolerance: most rows, not all, must agree.
    tol = 1e-3 * max(1.0, np.abs(l32).max())
    agree = np.all(np.abs(l64 - l32) <= tol, axis=1)
    assert agree.sum() >= 5, (agree, np.abs(l64 - l32).max(axis=1))


def test_float64_twin_matches_full_precision_activations_exactly():
    """Without activation quantisers there are no thresholds to straddle: every row agrees."""
    import rolekd_tf  # noqa: F401
    from rolekd_tf.export.reference import float64_logits
    from rolekd_tf.models import build_model

    import keras

    keras.utils.set_random_seed(0)  # a fixed init (unbounded ReLU activations grow with depth)
    m = build_model("resnet20", num_classes=10, w_bits=4, a_bits=32)
    x = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    mean, std = (0.5,) * 3, (0.25,) * 3
    l64 = float64_logits(m, x, mean, std)
    l32 = np.asarray(m((x / 255.0 - 0.5) / 0.25, training=False))
    np.testing.assert_allclose(l64, l32, rtol=0, atol=1e-4 * max(1.0, np.abs(l32).max()))


def test_float64_twin_settles_float32_ties():
    """y = Σ of float32 terms that equals the 2-bit threshold 0.5/3 in exact arithmetic plus a
    margin below float32 resolution: float32 and float64 round it differently — the twin gives
    the exact answer."""
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.export.reference import float64_twin
    from rolekd_tf.quant import ActivationQuantizer, DoReFaActivations

    inp = keras.Input((2,))
    out = ActivationQuantizer(DoReFaActivations(2))(keras.layers.Dense(1, use_bias=False)(inp))
    m = keras.Model(inp, out)
    m.layers[1].set_weights([np.array([[1.0], [1.0]], np.float32)])
    a = np.float64(0.5 / 3)
    x = np.array([[a, 1e-9]])  # exact sum just above the threshold
    assert float(np.asarray(m(x.astype(np.float32)))[0, 0]) == 0.0  # float32: a + 1e-9 rounds back to a
    import tensorflow as tf

    assert float(np.asarray(float64_twin(m)(tf.constant(x)))[0, 0]) == pytest.approx(1 / 3)
