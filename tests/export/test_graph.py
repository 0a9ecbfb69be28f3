"""rolekd_tf.export.graph: the int8 stem of a full-precision first conv (the normalisation folded
into its kernel, a constant 255 "indicator" channel for the normalised image's zero padding),
checked against a float64 numpy conv of the normalised image and against Keras."""
from __future__ import annotations

import numpy as np
import pytest

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)  # per channel: a wrong channel order shows


def _conv_same(x, k):
    """float64 stride-1 SAME convolution with zero padding (NHWC, HWIO): the independent reference."""
    kh, kw = k.shape[:2]
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    return sum(np.einsum("nhwc,cj->nhwj", xp[:, i:i + h, j:j + w], k[i, j]) for i in range(kh) for j in range(kw))


def test_stem_kernel_reproduces_the_normalised_conv_borders_included():
    """Pixels + a 255 channel, both zero-padded, through ``stem_kernel``'s kernel (and its tiled
    copies through the repeated input) = the conv of the normalised, zero-padded image."""
    from rolekd_tf.export import graph

    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 3, 3, 5))
    x = rng.integers(0, 256, (2, 6, 7, 3)).astype(np.float64)
    ref = _conv_same((x / 255.0 - np.asarray(MEAN)) / np.asarray(STD), k)
    xa = np.concatenate([x, np.full(x.shape[:3] + (1,), 255.0)], -1)
    for copies in (1, 2, 3):
        kall, tiled, _ = graph.stem_kernel(k, np.zeros(5), MEAN, STD, copies)
        assert kall.shape == (3, 3, 4, 5) and tiled.shape == (3, 3, 4 * copies, 5)
        np.testing.assert_allclose(_conv_same(xa, kall), ref, atol=1e-9)
        np.testing.assert_allclose(_conv_same(np.concatenate([xa] * copies, -1), tiled), ref, atol=1e-9)
    # the indicator's zero padding matters: an offset added at every tap misses the border only
    kall, _, _ = graph.stem_kernel(k, np.zeros(5), MEAN, STD, 1)
    everywhere = _conv_same(x, kall[:, :, :3]) + 255.0 * kall[:, :, 3].sum((0, 1))
    np.testing.assert_allclose(everywhere[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-9)
    assert np.min(np.abs(everywhere - ref)[:, 0]) > 1e-3


def _border_images(n, size, seed):
    """Random pixels whose outer ring is saturated (0 or 255 per pixel and channel): the border
    outputs, where the kernel overlaps the zero padding, then differ most from the interior's."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3)).astype(np.float32)
    ring = np.ones((size, size), bool)
    ring[1:-1, 1:-1] = False
    x[:, ring] = 255.0 * rng.integers(0, 2, (n, int(ring.sum()), 3))
    return x


@pytest.fixture(scope="module")
def fp_stem():
    """A full-precision ResNet-8 (16×16 pixels, BN statistics of random images) and its int8
    files with 1 and 2 stem copies (and the default)."""
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.export import graph, passes as P
    from rolekd_tf.models import build_model
    from tests.export._tiny_run import set_bn_statistics

    keras.utils.set_random_seed(5)
    m = build_model("resnet8", num_classes=10, w_bits=32, a_bits=32, input_shape=(16, 16, 3))
    rep = np.random.default_rng(1).uniform(0, 255, (64, 16, 16, 3)).astype(np.float32)
    set_bn_statistics(m, ((rep / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).astype(np.float32))
    files = {}
    for copies in (1, 2, None):
        view, plan = graph.build_export_view(m, MEAN, STD, mode="int8", stem_copies=copies)
        assert plan["stem_conv"].kind == "stem"
        files[copies] = P.int8_file(view, rep, plan, logits_bias=plan[m.layers[-1].name].bias).data
    return m, files


def _ops(data):
    from rolekd_tf.export import flatbuf as F

    model, opname = F.read(data)
    g = model.subgraphs[0]
    return [(opname(op), [int(d) for d in g.tensors[op.inputs[1]].shape] if len(op.inputs) > 1 else None)
            for op in g.operators]


def test_int8_stem_ops(fp_stem):
    """uint8 pixels → QUANTIZE → PADV2 (the 255 channel) → one CONCATENATION of the copies →
    the 3×3 conv; no 1×1 conv writes the indicator; XNNPACK takes the rest as one partition."""
    from rolekd_tf.export import graph, tflite as T

    _, files = fp_stem
    two, one = _ops(files[2]), _ops(files[1])
    assert [o for o, _ in two[:4]] == ["QUANTIZE", "PADV2", "CONCATENATION", "CONV_2D"]
    assert two[3][1] == [16, 3, 3, 8] and [o for o, _ in two].count("CONCATENATION") == 1
    assert [o for o, _ in one[:3]] == ["QUANTIZE", "PADV2", "CONV_2D"] and one[2][1] == [16, 3, 3, 4]
    assert "CONCATENATION" not in [o for o, _ in one]
    for ops in (one, two):
        assert not [s for o, s in ops if o == "CONV_2D" and s[1:3] == [1, 1] and s[0] == 1]
    assert files[None] == files[graph.STEM_COPIES]
    ops = T.interpreter(files[2])._get_ops_details()
    assert [o["op_name"] for o in ops].count("DELEGATE") <= 1


@pytest.mark.parametrize("copies,max_steps,mean_steps", [(2, 2.0, 0.3), (1, 3.5, 0.5)])
def test_int8_stem_matches_keras_at_the_border(fp_stem, copies, max_steps, mean_steps):
    """The int8 file's stem output (conv + folded BN + ReLU) on images with saturated borders
    equals Keras' ``stem_relu`` on the normalised images (clipped to the file's calibrated range)
    within 2 (2 copies) or 3.5 (1 copy) steps of its int8 scale, on the border ring as inside."""
    import keras

    from rolekd_tf.export import tflite as T

    m, files = fp_stem
    x = _border_images(6, 16, seed=2)
    xn = ((x / 255.0 - np.asarray(MEAN)) / np.asarray(STD)).astype(np.float32)
    ref = np.asarray(keras.Model(m.inputs, m.get_layer("stem_relu").output)(xn), np.float64)
    it = T.interpreter(files[copies], experimental_preserve_all_tensors=True)
    stem = next(o for o in it._get_ops_details() if o["op_name"] == "CONV_2D")
    t = int(stem["outputs"][0])
    s, zp = next(d["quantization"] for d in it.get_tensor_details() if d["index"] == t)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x.astype(np.uint8))
    it.invoke()
    ref = np.clip(ref, (-128 - zp) * s, (127 - zp) * s)  # the calibrated int8 range
    err = np.abs((it.get_tensor(t).astype(np.float64) - zp) * s - ref) / s
    ring = np.ones(x.shape[1:3], bool)
    ring[1:-1, 1:-1] = False
    for part in (err[:, ring], err[:, ~ring]):
        assert part.max() <= max_steps and part.mean() <= mean_steps, (part.max(), part.mean())


def test_int8_stem_file_runs_any_batch(fp_stem):
    """The stem has no batch-1 constant: a batch of 5 gives what 5 single images give."""
    from rolekd_tf.export import tflite as T

    _, files = fp_stem
    x = _border_images(5, 16, seed=3)
    it = T.interpreter(files[2])
    np.testing.assert_array_equal(T.run(it, x, batch=5), T.run(it, x, batch=1))
