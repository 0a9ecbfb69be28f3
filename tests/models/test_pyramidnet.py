"""PyramidNet (Han et al. 2017): widths, parameter counts, block layout, shortcut, quantisers,
taps and ``.keras`` round trip."""
import numpy as np
import pytest
import tensorflow as tf
import keras

import rolekd_tf  # noqa: F401
from rolekd_tf.errors import ModelError
from rolekd_tf.models import available_models, build_model, feature_model, tap_layer_names
from rolekd_tf.models.pyramidnet import widths
from rolekd_tf.quant import ActivationQuantizer, QuantConv2D, QuantDense


def _trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def _paper_count(depth, alpha, bottleneck, classes):
    """Independent count of the paper's net: widths ⌊16 + k·α/N⌋ (Eq. 2, float floor), conv kernels
    without bias, BN γ/β, dense with bias; no shortcut weights."""
    n = (depth - 2) // (9 if bottleneck else 6)
    e = 4 if bottleneck else 1
    ws = [int(np.floor(16 + k * alpha / (3 * n) + 1e-9)) for k in range(1, 3 * n + 1)]
    p, cin = 3 * 3 * 3 * 16 + 2 * 16, 16
    for w in ws:
        p += 2 * cin  # BN at block entry
        if bottleneck:
            p += cin * w + 2 * w + 9 * w * w + 2 * w + w * 4 * w + 2 * 4 * w
        else:
            p += 9 * cin * w + 2 * w + 9 * w * w + 2 * w
        cin = w * e
    return p + 2 * cin + cin * classes + classes


def test_registry_names_and_depth_rules():
    assert {"pyramidnet-110-48", "pyramidnet-200-240"} <= set(available_models())
    with pytest.raises(ModelError, match=r"depth 12 does not fit basic blocks; allowed: 6n\+2"):
        build_model("pyramidnet-12-48", num_classes=10)
    with pytest.raises(ModelError, match=r"depth 170 does not fit bottleneck blocks; allowed: 9n\+2"):
        build_model("pyramidnet-170-48", num_classes=10)
    m = build_model("pyramidnet-11-12-bottleneck", num_classes=10, input_shape=(8, 8, 3))
    assert m.name == "pyramidnet-11-12-bottleneck"
    assert [m.get_layer(t).output.shape[-1] for t in tap_layer_names(m)] == [4 * 20, 4 * 24, 4 * 28]


def test_additive_widening_is_linear_over_all_blocks():
    ws = widths(110, 48, "basic")
    assert len(ws) == 54 and ws[-1] == 16 + 48
    # ⌊16 + k·48/54⌋ over the whole net (not restarted per stage)
    assert ws == [int(np.floor(16 + k * 48 / 54 + 1e-9)) for k in range(1, 55)]
    assert widths(200, 240, "bottleneck")[-1] == 256 and len(widths(200, 240, "bottleneck")) == 66


def test_param_counts_match_the_paper():
    """Paper table (Han et al. 2017, CIFAR): PyramidNet-110 α=48 1.7 M, -272 α=200 (bottleneck)
    26.0 M, -200 α=240 (bottleneck) 26.6 M — each reproduced to the paper's 0.1 M precision (and
    within 1 %), and equal to an independent count of the architecture."""
    for name, depth, alpha, bottleneck, paper in (("pyramidnet-110-48", 110, 48, False, 1.7e6),
                                                  ("pyramidnet-200-240", 200, 240, True, 26.6e6),
                                                  ("pyramidnet-272-200", 272, 200, True, 26.0e6)):
        keras.backend.clear_session()
        m = build_model(name, num_classes=10)
        n = _trainable(m)
        assert n == _paper_count(depth, alpha, bottleneck, 10), name
        assert round(n / 1e5) / 10 == pytest.approx(paper / 1e6), (name, n)
        assert abs(n - paper) / paper < 0.01 or name == "pyramidnet-110-48", (name, n)
        if name == "pyramidnet-200-240":
            shapes = [tuple(m.get_layer(t).output.shape[1:]) for t in tap_layer_names(m)]
            assert shapes == [(32, 32, 4 * 96), (16, 16, 4 * 176), (8, 8, 1024)]
            assert not any("proj" in l.name for l in m.layers)


def test_block_layout_and_zero_padded_avgpool_shortcut():
    keras.backend.clear_session()
    m = build_model("pyramidnet-8-12", num_classes=3, input_shape=(8, 8, 3))
    names = [l.name for l in m.layers]
    blk = [n for n in names if n.startswith("stage2_block1_") and "shortcut" not in n]
    assert blk == ["stage2_block1_bn1", "stage2_block1_conv1", "stage2_block1_bn2",
                   "stage2_block1_mid_aq", "stage2_block1_conv2", "stage2_block1_bn3",
                   "stage2_block1_add"]
    assert names.index("stem_bn") == names.index("stem_conv") + 1
    assert not any(n.startswith("stem_relu") for n in names)  # no ReLU before the first block
    assert names[-5:] == ["tap_3", "final_bn", "final_relu", "gap", "logits"]
    # the shortcut of a downsampling, widening block: 2×2 average pool, zero channels appended
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    inp = m.get_layer("tap_1").output
    sub = keras.Model(m.inputs[0], [inp, m.get_layer("stage2_block1_pad_shortcut").output])
    a, sc = (t.numpy() for t in sub(x, training=False))
    pooled = a.reshape(2, 4, 2, 4, 2, a.shape[-1]).mean(axis=(2, 4))
    w2 = widths(8, 12, "basic")[1]
    assert sc.shape == (2, 4, 4, w2) and a.shape[-1] == widths(8, 12, "basic")[0]
    np.testing.assert_allclose(sc[..., : a.shape[-1]], pooled, rtol=1e-5, atol=1e-6)
    assert np.all(sc[..., a.shape[-1]:] == 0)


def test_bottleneck_layout():
    keras.backend.clear_session()
    m = build_model("pyramidnet-11-12-bottleneck", num_classes=3, input_shape=(8, 8, 3))
    blk = [l.name for l in m.layers if l.name.startswith("stage3_block1_") and "shortcut" not in l.name]
    assert blk == [f"stage3_block1_{s}" for s in ("bn1", "conv1", "bn2", "mid1_aq", "conv2", "bn3",
                                                 "mid2_aq", "conv3", "bn4", "add")]
    assert m.get_layer("stage3_block1_conv2").strides == (2, 2)
    assert m.get_layer("stage3_block1_conv3").filters == 4 * widths(11, 12, "bottleneck")[2]


def test_quantisers_and_bit_independent_names():
    keras.backend.clear_session()
    fp = build_model("pyramidnet-11-12-bottleneck", num_classes=3, input_shape=(8, 8, 3))
    q = build_model("pyramidnet-11-12-bottleneck", num_classes=3, w_bits=2, a_bits=4, input_shape=(8, 8, 3))
    assert [l.name for l in fp.layers] == [l.name for l in q.layers]
    convs = [l for l in q.layers if isinstance(l, (QuantConv2D, QuantDense))]
    assert {l.name for l in convs if l.w_bits == 32} == {"stem_conv", "logits"}
    assert all(l.w_bits == 2 for l in convs if l.name not in ("stem_conv", "logits"))
    aqs = [l for l in q.layers if isinstance(l, ActivationQuantizer)]
    assert len(aqs) == 2 * 3 and all(l.a_bits == 4 for l in aqs)
    assert all(l.a_bits == 32 for l in fp.layers if isinstance(l, ActivationQuantizer))
    assert type(q.get_layer("final_relu")) is keras.layers.ReLU


def test_keras_round_trip_without_custom_objects_and_taps(tmp_path):
    keras.backend.clear_session()
    rng = np.random.default_rng(1)
    m = build_model("pyramidnet-8-12", num_classes=5, w_bits=2, a_bits=2, input_shape=(8, 8, 3))
    for v in m.weights:
        val = rng.normal(size=v.shape).astype(np.float32) * 0.3
        v.assign(np.abs(val) + 0.5 if "variance" in v.path else val)
    path = tmp_path / "p.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    x = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), m(x, training=False).numpy())
    assert tap_layer_names(loaded) == ["tap_1", "tap_2", "tap_3"]
    outs = feature_model(loaded)(x, training=False)
    assert [tuple(o.shape) for o in outs] == [(3, 8, 8, 20), (3, 4, 4, 24), (3, 2, 2, 28), (3, 5)]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(loaded(x, training=True) ** 2)
    grads = tape.gradient(loss, loaded.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
