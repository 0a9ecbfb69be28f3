import numpy as np
import pytest
import tensorflow as tf
import keras

import rolekd_tf  # noqa: F401
from rolekd_tf.config import Int8Exactness
from rolekd_tf.errors import ConfigError, ModelError
from rolekd_tf.models import (
    available_models,
    build_model,
    feature_model,
    kernel_variables,
    tap_layer_names,
)
from rolekd_tf.quant import ActivationQuantizer, DoReFaActivations, FullPrecision, Int8Grid, QuantConv2D, QuantDense
from tests.quant import _numpy_ref as ref


def _trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def _expected_tap_channels(name):
    if name == "resnet18":
        return [64, 128, 256, 512]
    if name == "alexnet":
        return [192, 384, 256, 256]
    if name.startswith("wrn-"):
        k = int(name.split("-")[2])
        return [16 * k, 32 * k, 64 * k]
    if name == "preresnet164":
        return [64, 128, 256]
    if name == "pyramidnet-110-48":  # ⌊16 + k·48/54⌋ at k = 18, 36, 54 (basic blocks)
        return [32, 48, 64]
    if name == "pyramidnet-200-240":  # 4·⌊16 + k·240/66⌋ at k = 22, 44, 66 (bottlenecks)
        return [384, 704, 1024]
    return [16, 32, 64]


def test_available_models_cover_the_contract():
    names = set(available_models())
    assert {"resnet18", "resnet20", "resnet32", "resnet56", "alexnet", "preresnet20",
            "preresnet32", "preresnet44", "preresnet56", "preresnet110", "preresnet164",
            "wrn-16-2", "wrn-28-10", "wrn-40-2"} <= names


@pytest.mark.parametrize("name", available_models())
def test_every_model_builds_with_taps(name):
    keras.backend.clear_session()
    m = build_model(name, num_classes=3, w_bits=2, a_bits=2, input_shape=(16, 16, 3))
    taps = tap_layer_names(m)
    assert taps == [f"tap_{i}" for i in range(1, len(taps) + 1)]
    assert [m.get_layer(t).output.shape[-1] for t in taps] == _expected_tap_channels(name)
    assert tuple(m.output.shape) == (None, 3)
    assert m.get_layer("logits").w_bits == 32
    assert len(feature_model(m).outputs) == len(taps) + 1


def test_resnet18_taps_and_params():
    m = build_model("resnet18", num_classes=10)
    shapes = [tuple(m.get_layer(t).output.shape[1:]) for t in tap_layer_names(m)]
    assert shapes == [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512)]
    # kuangliu/pytorch-cifar ResNet18 on CIFAR-10: 11,173,962 trainable parameters (≈ 11.2M)
    assert _trainable_count(m) == 11_173_962


def test_resnet20_taps_and_params():
    m = build_model("resnet20", num_classes=10)
    shapes = [tuple(m.get_layer(t).output.shape[1:]) for t in tap_layer_names(m)]
    assert shapes == [(32, 32, 16), (16, 16, 32), (8, 8, 64)]
    # He et al. ResNet-20 ≈ 0.27M: 269,722 with option-A shortcuts; option B adds two 1×1
    # projections (16·32 + 32·64 = 2,560) and their BN (2·(32 + 64) = 192).
    assert _trainable_count(m) == 269_722 + 2_560 + 192


def test_wrn_params_match_known_figures():
    # Zagoruyko & Komodakis' reference implementation on CIFAR-10.
    assert _trainable_count(build_model("wrn-40-2", num_classes=10)) == 2_243_546
    assert _trainable_count(build_model("wrn-16-2", num_classes=10)) == 691_674


def test_resnet18_w2a2_quantiser_placement():
    m = build_model("resnet18", num_classes=10, w_bits=2, a_bits=2)
    aqs = [l for l in m.layers if isinstance(l, ActivationQuantizer)]
    assert len(aqs) == 16 and all(l.a_bits == 2 for l in aqs)
    for s in range(1, 5):
        for b in (1, 2):
            names = {l.name for l in aqs if l.name.startswith(f"stage{s}_block{b}_")}
            assert names == {f"stage{s}_block{b}_in_aq", f"stage{s}_block{b}_mid_aq"}
            blk = f"stage{s}_block{b}"
            # the entry quantiser feeds conv1 and the shortcut
            assert m.get_layer(f"{blk}_conv1").input is m.get_layer(f"{blk}_in_aq").output
            if s > 1 and b == 1:
                assert m.get_layer(f"{blk}_proj_conv").input is m.get_layer(f"{blk}_in_aq").output
            else:
                add_inputs = m.get_layer(f"{blk}_add").input
                assert any(t is m.get_layer(f"{blk}_in_aq").output for t in add_inputs)
            assert m.get_layer(f"{blk}_mid_aq").input is m.get_layer(f"{blk}_bn1").output
            # block output: full-precision ReLU
            assert type(m.get_layer(f"{blk}_out")) is keras.layers.ReLU
    convs = [l for l in m.layers if isinstance(l, QuantConv2D)]
    assert {l.name for l in convs if l.w_bits == 32} == {"stem_conv"}
    assert all(l.w_bits == 2 for l in convs if l.name != "stem_conv")
    assert sum("proj_conv" in l.name for l in convs) == 3


def test_alexnet_quantiser_placement():
    m = build_model("alexnet", num_classes=10, w_bits=4, a_bits=4)
    quant = [l for l in m.layers if isinstance(l, (QuantConv2D, QuantDense))]
    assert {l.name for l in quant if l.w_bits == 32} == {"conv1", "logits"}
    assert {l.name for l in quant if l.w_bits == 4} == {"conv2", "conv3", "conv4", "conv5",
                                                         "fc1", "fc2"}
    # role-kd's student AlexNetCifar: a quantiser after conv1's BN+ReLU, none between fc2 and fct
    aqs = [l.name for l in m.layers if isinstance(l, ActivationQuantizer)]
    assert aqs == ["act1", "act2", "act3", "act4", "act5", "fc1_act"]
    assert all(m.get_layer(n).a_bits == 4 for n in aqs)
    assert type(m.get_layer("fc2_act")) is keras.layers.ReLU
    order = [l.name for l in m.layers]
    assert order[order.index("conv1"):order.index("conv2") + 1] == ["conv1", "bn1", "act1", "pool1", "conv2"]
    assert order[order.index("fc2"):] == ["fc2", "fc2_bn", "fc2_act", "logits"]
    assert m.get_layer("logits").use_bias is False
    # numerically: conv2 reads 4-bit levels, logits read unclipped FP features
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    probe = keras.Model(m.inputs[0], [m.get_layer("pool1").output, m.get_layer("fc2_act").output])
    p1, f2 = (t.numpy() for t in probe(x, training=False))
    np.testing.assert_allclose(p1 * 15, np.round(p1 * 15), atol=1e-4)
    assert p1.max() <= 1.0 and p1.min() >= 0.0
    assert f2.min() >= 0.0 and not np.allclose(f2 * 15, np.round(f2 * 15), atol=1e-4)


def test_fp_first_conv_and_last_dense_quantised_middle_numerically():
    rng = np.random.default_rng(0)
    m = build_model("resnet8", num_classes=5, w_bits=2, a_bits=2, input_shape=(8, 8, 3))
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    stem = m.get_layer("stem_conv")
    np.testing.assert_allclose(
        stem(x).numpy(), tf.nn.conv2d(x, stem.kernel.numpy(), 1, "SAME").numpy(), atol=1e-5)
    logits = m.get_layer("logits")
    h = rng.normal(size=(2, 64)).astype(np.float32)
    np.testing.assert_allclose(logits(h).numpy(),
                               h @ logits.kernel.numpy() + logits.bias.numpy(), atol=1e-5)
    conv = m.get_layer("stage2_block1_conv1")
    z = rng.normal(size=(2, 8, 8, 16)).astype(np.float32)
    qk = ref.weight_forward(conv.kernel.numpy(), 2).astype(np.float32)
    np.testing.assert_allclose(conv(z).numpy(), tf.nn.conv2d(z, qk, 2, "SAME").numpy(),
                               atol=1e-5)


def test_student_taps_are_fp_and_quantiser_outputs_on_grid():
    rng = np.random.default_rng(1)
    m = build_model("resnet8", num_classes=5, w_bits=2, a_bits=2, input_shape=(8, 8, 3))
    probe = keras.Model(m.input, [m.get_layer("stage2_block1_in_aq").output,
                                   m.get_layer("stage2_block1_mid_aq").output,
                                   m.get_layer("tap_1").output, m.get_layer("tap_2").output])
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    a_in, a_mid, t1, t2 = [t.numpy() for t in probe(x, training=False)]
    for a in (a_in, a_mid):
        np.testing.assert_allclose(a * 3, np.round(a * 3), atol=1e-4)
    for t in (t1, t2):  # FP block outputs: non-negative, not on the 2-bit grid
        assert t.min() >= 0
        assert np.abs(t * 3 - np.round(t * 3)).max() > 0.1
    # the quantiser at a block entry quantises exactly the previous tap
    np.testing.assert_allclose(a_in, ref.activation_forward(t1, 2), atol=1e-5)


def test_fp_model_is_plain_relu_network():
    m = build_model("resnet20", num_classes=10)
    assert all(l.a_bits == 32 for l in m.layers if isinstance(l, ActivationQuantizer))
    assert all(l.w_bits == 32 for l in m.layers if isinstance(l, (QuantConv2D, QuantDense)))


def test_layer_names_independent_of_bits():
    keras.backend.clear_session()
    a = build_model("preresnet20", num_classes=10)
    b = build_model("preresnet20", num_classes=10, w_bits=4, a_bits=4)
    assert [l.name for l in a.layers] == [l.name for l in b.layers]


@pytest.mark.parametrize("bits", [0, 33])
def test_bad_bits_raise(bits):
    with pytest.raises(ModelError, match=f"w_bits={bits} is out of range"):
        build_model("resnet20", num_classes=10, w_bits=bits)
    with pytest.raises(ModelError, match=f"a_bits={bits} is out of range"):
        build_model("resnet20", num_classes=10, a_bits=bits)


def test_unknown_model_did_you_mean():
    with pytest.raises(ModelError, match=r"did you mean 'resnet20'.*available: .*wrn-28-10"):
        build_model("resnt20", num_classes=10)
    with pytest.raises(ModelError, match="6n\\+4"):
        build_model("wrn-27-2", num_classes=10)
    with pytest.raises(ModelError, match="num_classes"):
        build_model("resnet20", num_classes=0)


def test_depth_families_by_pattern():
    m = build_model("resnet8", num_classes=10, input_shape=(8, 8, 3))
    assert len([l for l in m.layers if l.name.endswith("_conv1")]) == 3
    m = build_model("wrn-10-1", num_classes=10, input_shape=(8, 8, 3))
    assert len(tap_layer_names(m)) == 3


def test_kernel_variables():
    m = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2)
    ks = kernel_variables(m)
    layers = [l for l in m.layers if isinstance(l, (QuantConv2D, QuantDense))]
    assert len(ks) == len(layers) == 19 + 2 + 1  # 19 convs + 2 projections + logits
    assert [id(v) for v in ks] == [id(l.kernel) for l in layers]
    assert all(v.path.endswith("/kernel") for v in ks)


def test_forward_pass_and_gradients_small_models():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 16, 16, 3)).astype(np.float32))
    for name in ("preresnet20", "wrn-16-2", "alexnet"):
        m = build_model(name, num_classes=4, w_bits=2, a_bits=2, input_shape=(16, 16, 3))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(x, training=True) ** 2)
        grads = tape.gradient(loss, m.trainable_variables)
        assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_int8_exact_variant_flags(tmp_path):
    """Opt-in exact_stem / shared_proj_bn: defaults unchanged; stem kernel on a per-channel int8
    grid (straight-through gradient); projection blocks BN(conv2 + proj); saved and reloaded."""
    base = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2)
    assert base.get_layer("stem_conv").kernel_quantizer == FullPrecision()
    assert "stage2_block1_proj_bn" in {l.name for l in base.layers}
    m = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2, int8=Int8Exactness(stem=True, shared_proj_bn=True))
    names = {l.name for l in m.layers}
    assert not any(n.endswith("_proj_bn") for n in names) and "stage3_block1_proj_conv" in names
    assert m.get_layer("stage2_block1_bn2").input._keras_history.operation.name == "stage2_block1_add"
    assert m.count_params() < base.count_params()
    stem = m.get_layer("stem_conv")
    k = stem.dorefa_kernel().numpy().astype(np.float64)
    s = np.max(np.abs(k.reshape(-1, k.shape[-1])), 0) / 127.0
    q = k / s
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert np.max(np.abs(np.round(q))) == 127
    x = tf.random.normal((2, 32, 32, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(m(x, training=True))
    g = tape.gradient(loss, stem.kernel)
    assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert m2.get_layer("stem_conv").int8_weights
    np.testing.assert_allclose(m2(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ModelError):
        build_model("preresnet20", num_classes=10, int8=Int8Exactness(stem=True))
    with pytest.raises(ModelError):
        QuantConv2D(4, 3, kernel_quantizer=DoReFaActivations(2))


def test_exact_stem_step(tmp_path):
    """exact_stem_step = g: per channel the stem kernel is s_j·i with integers |i| ≤ ⌊127/g⌋ (the
    largest used), NumPy reference; the step survives save/load; bad steps are one-line errors."""
    m = build_model("resnet20", num_classes=10, w_bits=4, a_bits=4, int8=Int8Exactness(stem=True, stem_step=4))
    stem = m.get_layer("stem_conv")
    assert stem.int8_step == 4 and stem.get_config()["kernel_quantizer"]["config"]["step"] == 4
    latent = stem.kernel.numpy().astype(np.float64)
    s = np.max(np.abs(latent.reshape(-1, latent.shape[-1])), 0) / 31.0
    np.testing.assert_allclose(stem.dorefa_kernel().numpy(), np.round(latent / s) * s, rtol=1e-5, atol=1e-7)
    q = stem.dorefa_kernel().numpy().astype(np.float64) / s
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert np.max(np.abs(np.round(q))) == 31
    assert build_model("resnet20", num_classes=10, int8=Int8Exactness(stem=True)).get_layer(
        "stem_conv").kernel_quantizer == Int8Grid(1)
    m.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras", compile=False).get_layer("stem_conv").int8_step == 4
    for bad, match in ((dict(stem=True, stem_step=0), "stem_step=0 is out of range; allowed: an integer in 1..42"),
                       (dict(stem=True, stem_step=43), "allowed: an integer in 1..42"),
                       (dict(stem=True, stem_step=2.5), "stem_step=2.5"),
                       (dict(stem_step=4), "needs int8.stem=true")):
        with pytest.raises(ConfigError, match=match):
            build_model("resnet20", num_classes=10, int8=Int8Exactness(**bad))
    with pytest.raises(ModelError, match="step=43 is invalid; allowed: an integer in 1..42"):
        Int8Grid(43)
    from rolekd_tf.config import INT8_STEPS
    from rolekd_tf.quant import dorefa

    assert INT8_STEPS == dorefa.INT8_STEPS  # config validates without importing TensorFlow


def test_zero_pad_shortcut_and_exact_tail_flags(tmp_path):
    """Opt-in shortcut="zero_pad" (option A) / exact_tail: defaults unchanged; the shortcut is the
    block's quantised input subsampled and channel-zero-padded (no weights); the last block output
    is the a_bits quantiser and the logits kernel lies on a per-channel int8 grid; saved and
    reloaded without custom objects; config / builder errors."""
    from rolekd_tf.models import ZeroPadShortcut
    EXACT_TAIL_GAIN = Int8Exactness().tail_gain
    from rolekd_tf.quant import ActivationQuantizer, QuantDense

    base = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2)
    assert base.get_layer("logits").kernel_quantizer == FullPrecision()
    assert isinstance(base.get_layer("stage3_block3_out"), keras.layers.ReLU)
    m = build_model("resnet20", num_classes=10, w_bits=2, a_bits=2, int8=Int8Exactness(shortcut="zero_pad", tail=True))
    names = {l.name for l in m.layers}
    assert not any("proj" in n for n in names)
    assert m.count_params() < base.count_params()
    pad = m.get_layer("stage2_block1_pad_shortcut")
    assert isinstance(pad, ZeroPadShortcut) and not pad.weights
    assert pad.input._keras_history.operation.name == "stage2_block1_in_aq"
    out = m.get_layer("stage3_block3_out")
    assert isinstance(out, ActivationQuantizer) and out.a_bits == 2
    assert isinstance(m.get_layer("stage3_block2_out"), keras.layers.ReLU)
    # ZeroPadShortcut: rows/cols 0, 2, 4, … (as a stride-2 1×1 'same' conv), zeros around
    x = tf.random.uniform((2, 7, 7, 4))
    y = ZeroPadShortcut(8, 2)(x).numpy()
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., 2:6], x.numpy()[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 6:].any()
    lg = m.get_layer("logits")
    assert isinstance(lg, QuantDense) and lg.int8_weights and lg.kernel_quantizer.gain == EXACT_TAIL_GAIN > 1
    k = lg.dorefa_kernel().numpy().astype(np.float64)
    q = k / (np.max(np.abs(k), 0) / 127.0)
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    xi = tf.random.normal((2, 32, 32, 3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(m(xi, training=True) ** 2)
    g = tape.gradient(loss, lg.kernel)
    assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0
    m.save(tmp_path / "m.keras")
    m2 = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert isinstance(m2.get_layer("stage3_block1_pad_shortcut"), ZeroPadShortcut)
    assert m2.get_layer("logits").kernel_quantizer == Int8Grid(gain=EXACT_TAIL_GAIN)
    np.testing.assert_allclose(m2(xi).numpy(), m(xi).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError):
        Int8Exactness(shortcut="option_a")
    with pytest.raises(ConfigError):
        Int8Exactness(shortcut="zero_pad", shared_proj_bn=True)
    with pytest.raises(ModelError):
        build_model("preresnet20", num_classes=10, int8=Int8Exactness(tail=True))
    with pytest.raises(ModelError):
        QuantDense(4, kernel_quantizer=DoReFaActivations(2))
    with pytest.raises(ModelError):
        QuantDense(4, kernel_quantizer=Int8Grid(gain=0.0))
