"""rolekd_tf.export.passes: each pass of the int8 export on a tiny ResNet-8 (16×16 pixels), checked
against numbers computed here from the plan and the flatbuffer, not against the pass itself."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.25, 0.3)


def _tiny(w_bits, a_bits, size=16, **variant):
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.export import graph
    from rolekd_tf.models import build_model
    from tests.export._tiny_run import set_bn_statistics

    keras.utils.set_random_seed(3)
    m = build_model("resnet8", num_classes=10, w_bits=w_bits, a_bits=a_bits, input_shape=(size, size, 3), **variant)
    x = np.random.default_rng(0).uniform(0, 255, (64, size, size, 3)).astype(np.float32)
    mean, std = graph.model_normalisation(m, MEAN, STD)  # exact_stem: (pixels − 128)/64
    set_bn_statistics(m, ((x / 255.0 - np.asarray(mean)) / np.asarray(std)).astype(np.float32))
    return m, x


def _invoked(data, pixels):
    """A LiteRT interpreter of ``data`` (every tensor kept) after one run on ``pixels`` (N, H, W, 3)."""
    from rolekd_tf.export import tflite as T

    it = T.interpreter(data, experimental_preserve_all_tensors=True)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], list(pixels.shape))
    it.allocate_tensors()
    it.set_tensor(d["index"], pixels.astype(np.uint8))
    it.invoke()
    return it


def _exact_tail(bits, size):
    """A tiny int8-exact ResNet-8 (int8 stem, zero_pad shortcut, tail): (model, pixels, plan,
    bytes after the grids and bias passes)."""
    from rolekd_tf.export import graph, passes as P

    from rolekd_tf.config import Int8Exactness

    m, x = _tiny(bits, bits, size, int8=Int8Exactness(stem=True, shortcut="zero_pad", tail=True))
    view, plan = graph.build_export_view(m, MEAN, STD, mode="int8")
    fixed, _ = P.fix_int8_model(P.convert_int8(view, x[:32]), plan)
    return m, x, plan, fixed


@pytest.fixture(scope="module")
def w2a2():
    """(model, pixels, plan, converter int8 bytes, fp32 view, fp32 bytes)."""
    from rolekd_tf.export import graph, passes as P

    m, x = _tiny(2, 2)
    view, plan = graph.build_export_view(m, MEAN, STD, mode="int8")
    raw = P.convert_int8(view, x[:32])
    fview, fplan = graph.build_export_view(m, MEAN, STD, mode="float")
    return m, x, plan, raw, fview, P.convert_fp32(fview), fplan


def _ops(data):
    from rolekd_tf.export import flatbuf as F

    model, opname = F.read(data)
    g = model.subgraphs[0]
    return model, g, [(opname(op), op) for op in g.operators]


def test_convert_fp32_matches_the_view(w2a2):
    from rolekd_tf.export import tflite as T

    _, x, _, _, fview, fp32, _ = w2a2
    got = T.run(T.interpreter(fp32), x[:8], batch=8)
    np.testing.assert_allclose(got, np.asarray(fview(x[:8])), atol=1e-4)


def test_convert_int8_is_full_integer_with_uint8_pixels(w2a2):
    from rolekd_tf.export import flatbuf as F, tflite as T

    _, _, _, raw, _, _, _ = w2a2
    inp = T.interpreter(raw).get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    model, g, ops = _ops(raw)
    filters = [g.tensors[op.inputs[1]] for name, op in ops if name in ("CONV_2D", "FULLY_CONNECTED")]
    assert filters and all(t.type == F.INT8 for t in filters)


def test_convert_error_names_the_layer():
    """A converter message naming an op in a layer's scope becomes one line naming that layer."""
    import keras

    from rolekd_tf.export.passes.convert import explain

    inp = keras.Input((4, 4, 3))
    y = keras.layers.Dense(2, name="odd_layer")(keras.layers.Flatten(name="flat")(inp))
    model = keras.Model(inp, y, name="tiny")
    err = RuntimeError("loc(fused[\"Lgamma:\", \"tiny_1/odd_layer_1/Lgamma@__inference\"]): 'tf.Lgamma' op is "
                       "neither a custom op nor a flex op\nmore lines")
    msg = explain(err, model)
    assert "\n" not in msg and "'odd_layer'" in msg and "Lgamma" in msg and "'tiny'" in msg and "flat" not in msg


def test_exact_grids_store_the_dorefa_levels(w2a2):
    """Every 2-bit conv's int8 filter × its per-channel scale is the plan's (BN-folded) kernel, the
    integers are odd multiples of M = ⌊127/3⌋ = 42, and the refine step leaves 2-bit inputs alone."""
    from rolekd_tf.export import flatbuf as F
    from rolekd_tf.export.passes.grids import exact_grids

    _, _, plan, raw, _, _, _ = w2a2
    data, refined, recs = exact_grids(raw, plan)
    assert refined == []  # n = 3 < FINE_GRID_MIN_LEVELS
    model, g, ops = _ops(data)
    exact = [r for r in recs if r.exact_weights]
    two_bit = [k for k, v in plan.items() if v.get("w_bits") == 2]
    assert sorted(r.layer for r in exact) == sorted(two_bit)
    for r in exact:
        wt = g.tensors[r.tensor_index]
        q = F.int8_values(model, wt)
        s = np.asarray(wt.quantization.scale, np.float64).reshape((-1,) + (1,) * (q.ndim - 1))
        k = F.to_tflite_layout(np.asarray(plan[r.layer].kernel, np.float64))
        np.testing.assert_allclose(q * s, k, rtol=1e-6, atol=1e-7)
        assert set(np.unique(np.abs(q))) <= {42, 126} and set(r.int_values) == set(np.unique(q).tolist())


def test_refine_quantiser_grids_adds_exact_requantisation():
    """4-bit quantiser outputs read by convs get one QUANTIZE to scale 1/(15·17) = 1/255 whose
    values are exactly 17·level − 128 (level = source value + 128): no rounding."""
    from rolekd_tf.export import graph, passes as P, tflite as T

    m, x = _tiny(4, 4)
    view, plan = graph.build_export_view(m, MEAN, STD, mode="int8")
    raw = P.convert_int8(view, x[:32])
    fine, recs, _ = P.exact_grids(raw, plan)
    assert recs and all(r.n == 15 and r.m == 17 for r in recs)
    model, g, ops = _ops(fine)
    assert sum(name == "QUANTIZE" for name, _ in ops) == sum(name == "QUANTIZE" for name, _ in _ops(raw)[2]) + len(recs)
    data, _ = P.fit_biases(fine, plan, P.exact_grids(raw, plan)[2])
    it = _invoked(data, x[:4])
    for r in recs:
        t = g.tensors[r.fine_tensor]
        assert t.quantization.scale[0] == np.float32(1 / 255) and t.quantization.zeroPoint[0] == -128
        src = it.get_tensor(r.tensor).astype(np.int64)
        np.testing.assert_array_equal(it.get_tensor(r.fine_tensor).astype(np.int64), 17 * (src + 128) - 128)


def test_bias_fit_uses_the_actual_scales(w2a2):
    """After the bias pass every conv/dense bias has scale input_scale × filter_scale (float32) and
    real value within half a step of the plan's bias."""
    from rolekd_tf.export import flatbuf as F
    from rolekd_tf.export.passes.bias import fit_biases
    from rolekd_tf.export.passes.grids import exact_grids

    _, _, plan, raw, _, _, _ = w2a2
    data, _, recs = exact_grids(raw, plan)
    data, recs = fit_biases(data, plan, recs)
    model, g, _ = _ops(data)
    for r in recs:
        op = g.operators[r.op_index]
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            assert not r.bias_fixed
            continue
        assert r.bias_fixed
        xt, wt, bt = (g.tensors[op.inputs[i]] for i in range(3))
        sb = np.float32(xt.quantization.scale[0]) * np.asarray(wt.quantization.scale, np.float32)
        np.testing.assert_allclose(np.asarray(bt.quantization.scale, np.float32), sb, rtol=1e-6)
        info = plan.get(r.layer)
        if info is not None and info.bias is not None and not r.bias_moved:
            b = np.frombuffer(bytes(model.buffers[bt.buffer].data), np.int32) * np.asarray(bt.quantization.scale, np.float64)
            assert np.max(np.abs(b - info.bias)) <= 0.5 * np.max(sb) * 1.001


def test_grid_records_are_frozen_and_read_like_json(w2a2):
    from rolekd_tf.export.passes import fix_int8_model

    _, _, plan, raw, _, _, _ = w2a2
    _, recs = fix_int8_model(raw, plan)
    r = next(r for r in recs if r.exact_weights)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.layer = "x"
    assert r["layer"] == r.layer and "layer" in r and "stem_copies" not in r and r.get("stem_copies", 7) == 7
    assert "exact_scale" in r.as_dict() and "stem_copies" not in r.as_dict()
    with pytest.raises(KeyError):
        r["no_such_field"]


def test_int16_logits(w2a2):
    """The logits FC writes int16 (zero point 0), its logits equal the int8 file's to within one
    int8 step; keep_int8_logits returns the bytes unchanged."""
    from rolekd_tf.export import tflite as T
    from rolekd_tf.export.passes import fix_int8_model
    from rolekd_tf.export.passes.logits import int16_logits, keep_int8_logits

    _, x, plan, raw, _, _, _ = w2a2
    fixed, _ = fix_int8_model(raw, plan)
    data, rec = int16_logits(fixed)
    assert rec.applied and rec.dtype == "int16" and rec.step < rec.int8_step / 50
    model, g, ops = _ops(data)
    (fc,) = [op for name, op in ops if name == "FULLY_CONNECTED"]
    out = g.tensors[fc.outputs[0]]
    assert out.type == 7 and out.quantization.zeroPoint[0] == 0
    a, b = T.run(T.interpreter(data), x[:16], batch=16), T.run(T.interpreter(fixed), x[:16], batch=16)
    assert np.max(np.abs(a - b)) <= 1.01 * rec.int8_step
    same, off = keep_int8_logits(fixed)
    assert same is fixed and not off.applied and off.why


def _mean_input_dtypes(data) -> list[int]:
    _, g, ops = _ops(data)
    return [g.tensors[op.inputs[0]].type for name, op in ops if name == "MEAN"]


@pytest.mark.parametrize("bits,size,exact_pool", [(2, 32, False), (4, 32, True), (4, 16, False)])
def test_exact_pool_only_where_the_int8_pool_is_inexact(bits, size, exact_pool):
    """The exact-tail pool of n levels over H×W is exact in int8 iff n·H·W ≤ 255: 2-bit 8×8 (192)
    and 4-bit 4×4 (240) keep the int8 MEAN (XNNPACK runs it) and give logits bit-identical to the
    exact-pool file; 4-bit 8×8 (960) gets the exact pool (no MEAN left). The product pipeline
    (``int8_file``) follows the plan."""
    from rolekd_tf.export import flatbuf as F, graph, passes as P, tflite as T
    from rolekd_tf.export.passes.logits import int16_logits, needs_exact_pool

    m, x, plan, fixed = _exact_tail(bits, size)
    (gm,) = [v for v in plan.values() if v.kind == "grid_mean"]
    assert gm.exact == ((2**bits - 1) * gm.hw <= 255) and gm.hw == (size // 4) ** 2
    assert needs_exact_pool(plan) == exact_pool
    bias = plan[m.layers[-1].name].bias
    p16, r16 = int16_logits(fixed, bias=bias, exact_pool=True)
    pick, rec = int16_logits(fixed, bias=bias, exact_pool=needs_exact_pool(plan))
    assert _mean_input_dtypes(p16) == [] and r16.exact_pool is not None
    assert _mean_input_dtypes(pick) == ([] if exact_pool else [F.INT8])
    assert (rec.exact_pool is not None) == exact_pool
    if not exact_pool:  # the int8 mean of ≤ 255 level steps is the exact one: same logits, bit for bit
        np.testing.assert_array_equal(T.run(T.interpreter(pick), x, batch=64), T.run(T.interpreter(p16), x, batch=64))
        ex = graph.int8_exactness(m, plan, exact_pool=False)
        assert "pool rounding" not in [p["part"] for p in ex["inexact"]]
    view, _ = graph.build_export_view(m, MEAN, STD, mode="int8")
    f8 = P.int8_file(view, x[:32], plan, logits_bias=bias)
    assert _mean_input_dtypes(f8.data) == ([] if exact_pool else [F.INT8])
    assert (f8.logits.exact_pool is not None) == exact_pool


def test_pool_window_rule():
    """a | H, b | W, n·a·b ≤ 255, a·b largest, then the squarest, then the larger a; checked
    against every (a, b) by brute force and on the cases the docs name."""
    from rolekd_tf.export.passes.logits import pool_window

    assert pool_window(15, 8, 8) == (4, 4) and pool_window(7, 8, 8) == (8, 4) and pool_window(3, 8, 8) == (8, 8)
    assert pool_window(15, 6, 6) == (6, 2) and pool_window(127, 7, 7) == (1, 1) and pool_window(255, 8, 8) == (1, 1)
    for n in (3, 7, 15, 31, 63, 127):
        for h, w in ((8, 8), (6, 6), (7, 7), (4, 8), (12, 5)):
            a, b = pool_window(n, h, w)
            assert h % a == 0 and w % b == 0 and n * a * b <= 255
            assert a * b == max(i * j for i in range(1, h + 1) for j in range(1, w + 1)
                                if h % i == 0 and w % j == 0 and n * i * j <= 255)


def _int16_mean_pool(int8_pool_bytes: bytes, bias) -> bytes:
    """The int16 pool the exact pool replaces (the exporter's before 2026-12-03 16:00), built here
    from a file whose logits FC reads an int8 MEAN through a CAST (``int16_logits(exact_pool=False)``):
    the CAST moves before the MEAN (the int16 MEAN then sums the raw int8 levels at the exact scale
    s_l/(H·W)), the bias is re-quantised at that scale with the zero point H·W·zp_l folded in."""
    from rolekd_tf.export import flatbuf as F

    s = F.schema()
    model, opname = F.read(int8_pool_bytes)
    g = model.subgraphs[0]
    (mean_op,) = [op for op in g.operators if opname(op) == "MEAN"]
    (cast,) = [op for op in g.operators if opname(op) == "CAST"]
    (fc,) = [op for op in g.operators if opname(op) == "FULLY_CONNECTED"]
    lt = g.tensors[mean_op.inputs[0]]
    hw = int(lt.shape[1] * lt.shape[2])
    s_l, zp_l = float(lt.quantization.scale[0]), int(lt.quantization.zeroPoint[0])
    lt16 = F.new_tensor(g, lt, F.INT16, "levels/int16", s_l, 0)
    x16 = int(cast.outputs[0])
    cast.inputs, cast.outputs = np.asarray([mean_op.inputs[0]], np.int32), np.asarray([lt16], np.int32)
    mean_op.inputs = np.asarray([lt16, mean_op.inputs[1]], np.int32)
    mean_op.outputs = np.asarray([x16], np.int32)
    mean_op.opcodeIndex = F.opcode(model, s.BuiltinOperator.MEAN, 3)
    g.operators.remove(cast)
    g.operators.insert(g.operators.index(mean_op), cast)
    s_m = float(np.float32(s_l / hw))
    g.tensors[x16].quantization.scale = [s_m]
    wt, bt = g.tensors[fc.inputs[1]], g.tensors[fc.inputs[2]]
    sw = np.asarray(wt.quantization.scale, np.float64)
    w = F.int8_values(model, wt)
    b64 = np.round(np.asarray(bias, np.float64) / (s_m * sw)).astype(np.int64) - hw * zp_l * w.sum(1)
    model.buffers[bt.buffer].data = np.frombuffer(b64.astype("<i8").tobytes(), np.uint8).copy()
    bt.quantization.scale = (s_m * sw).astype(np.float32).tolist()
    return F.write(model)


@pytest.mark.parametrize("bits,size,window", [(4, 32, (4, 4)), (3, 32, (8, 4)), (4, 24, (6, 2)), (7, 28, (1, 1))])
def test_exact_pool_equals_the_int16_mean_pool(bits, size, window):
    """The exact pool (int8 window sums of weight 1, the logits FC's weights tiled over the window
    positions) gives the same logits as the int16 CAST + MEAN of the whole level map, bit for bit,
    at 1 and 64 images per invoke — also where H·W is not a power of two (6×6) and where no window
    fits (7-bit levels on 7×7: the FC reads the CAST of the whole map). Its ops: DEPTHWISE_CONV_2D
    (a×b, stride a×b, VALID, weights 1 at scale 1, output quantisation = input's) → CAST → FC →
    DEQUANTIZE, no MEAN; each window sum is the integer sum of its levels; the record says so."""
    from rolekd_tf.export import flatbuf as F, tflite as T
    from rolekd_tf.export.passes.logits import int16_logits

    m, x, plan, fixed = _exact_tail(bits, size)
    (gm,) = [v for v in plan.values() if v.kind == "grid_mean"]
    assert not gm.exact
    bias = plan[m.layers[-1].name].bias
    data, rec = int16_logits(fixed, bias=bias, exact_pool=True)
    ref = _int16_mean_pool(int16_logits(fixed, bias=bias, exact_pool=False)[0], bias)
    assert _mean_input_dtypes(ref) == [F.INT16]
    for batch in (1, 64):
        np.testing.assert_array_equal(T.run(T.interpreter(data), x, batch=batch), T.run(T.interpreter(ref), x, batch=batch))

    n, h = 2**bits - 1, size // 4
    a, b = window
    p = h * h // (a * b)
    xp = rec.exact_pool
    assert (xp.levels, xp.values, tuple(xp.window), xp.positions) == (n, h * h, window, p)
    assert xp.scale == pytest.approx(1 / (n * h * h), rel=1e-6)
    model, g, ops = _ops(data)
    names = [name for name, _ in ops]
    assert "MEAN" not in names
    tail = ["DEPTHWISE_CONV_2D", "CAST"] if a * b > 1 else ["CAST"]
    assert names[-len(tail) - 2:] == tail + ["FULLY_CONNECTED", "DEQUANTIZE"]
    fc = ops[-2][1]
    c = int(plan[m.layers[-1].name].kernel.shape[0])  # channels into the logits layer
    x16 = g.tensors[fc.inputs[0]]
    assert x16.type == F.INT16 and list(x16.shape)[1:] == [h // a, h // b, c]
    assert x16.quantization.scale[0] == np.float32(xp.scale) and x16.quantization.zeroPoint[0] == 0
    model0, g0, ops0 = _ops(fixed)
    w0 = F.int8_values(model0, g0.tensors[ops0[-2][1].inputs[1]])  # the FC's own [classes, C] weights
    assert w0.shape[1] == c
    np.testing.assert_array_equal(F.int8_values(model, g.tensors[fc.inputs[1]]), np.tile(w0, (1, p)))
    it = _invoked(data, x[:8])
    if a * b > 1:
        dw = ops[-4][1]
        o = dw.builtinOptions
        assert (o.strideH, o.strideW, o.padding, o.depthMultiplier) == (a, b, F.schema().Padding.VALID, 1)
        lt, wk, st = (g.tensors[i] for i in (dw.inputs[0], dw.inputs[1], dw.outputs[0]))
        assert list(wk.shape) == [1, a, b, c] and np.all(F.int8_values(model, wk) == 1) and wk.quantization.scale == [1.0]
        assert st.type == F.INT8 and st.quantization.scale == lt.quantization.scale
        assert st.quantization.zeroPoint == lt.quantization.zeroPoint == [-128] and F.grid_levels(lt) == n
        lv = it.get_tensor(dw.inputs[0]).astype(np.int64) + 128  # levels 0…n
        assert lv.min() >= 0 and lv.max() <= n
        sums = lv.reshape(8, h // a, a, h // b, b, c).sum((2, 4))
        np.testing.assert_array_equal(it.get_tensor(dw.outputs[0]).astype(np.int64), sums - 128)
        np.testing.assert_array_equal(it.get_tensor(fc.inputs[0]).astype(np.int64), sums - 128)


def test_integer_output(w2a2):
    """The final DEQUANTIZE is dropped: the output is the int16 logits tensor (its scale and zero
    point in the record), (q − zp)·s equals the float output bit for bit, the op count drops by one."""
    from rolekd_tf.export import tflite as T
    from rolekd_tf.export.passes import fix_int8_model
    from rolekd_tf.export.passes.logits import int16_logits
    from rolekd_tf.export.passes.output import integer_output

    _, x, plan, raw, _, _, _ = w2a2
    data, _ = int16_logits(fix_int8_model(raw, plan)[0])
    out, rec = integer_output(data)
    assert rec.dtype == "int16" and rec.zero_point == 0
    it = T.interpreter(out)
    od = it.get_output_details()[0]
    assert od["dtype"] == np.int16 and od["quantization"][0] == pytest.approx(rec.scale)
    assert len(_ops(out)[2]) == len(_ops(data)[2]) - 1 and _ops(data)[2][-1][0] == "DEQUANTIZE"
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], [16, 16, 16, 3])
    it.allocate_tensors()
    it.set_tensor(d["index"], np.round(x[:16]).astype(np.uint8))  # the pixels T.run hands over
    it.invoke()
    q = it.get_tensor(od["index"])
    want = T.run(T.interpreter(data), x[:16], batch=16)
    np.testing.assert_array_equal((q.astype(np.float32) - rec.zero_point) * np.float32(rec.scale), want)


def test_subsample_as_depthwise_copies_exactly(w2a2):
    """Each zero_pad shortcut's stride-2 STRIDED_SLICE becomes a 1×1/2 DEPTHWISE_CONV_2D (weight 1
    at scale 1, bias 0, output quantisation = input's); the interpreter's outputs, the subsampled
    tensors included, are bit-identical; a file without such slices is returned unchanged."""
    from rolekd_tf.export import flatbuf as F, tflite as T
    from rolekd_tf.export.passes.subsample import subsample_as_depthwise

    _, x, _, fixed = _exact_tail(2, 16)
    _, g0, ops0 = _ops(fixed)
    slices = [op for name, op in ops0 if name == "STRIDED_SLICE"]
    assert len(slices) == 2  # resnet8: stage 2 and 3 entries
    data, rec = subsample_as_depthwise(fixed)
    assert rec.channels == [16, 32] and rec.added_bytes == 5 * 48
    model, g, ops = _ops(data)
    names = [name for name, _ in ops]
    assert "STRIDED_SLICE" not in names and names.count("DEPTHWISE_CONV_2D") == 2
    assert len(names) == len(ops0)
    read = {int(i) for _, op in ops for i in op.inputs}  # the slices' parameters leave no data behind
    assert not [i for i, t in enumerate(g.tensors) if i not in read and t.buffer and model.buffers[t.buffer].data is not None]
    for (name, op), (_, op0) in zip(ops, ops0):
        if name != "DEPTHWISE_CONV_2D":
            continue
        assert list(op.outputs) == list(op0.outputs) and op.inputs[0] == op0.inputs[0]
        w, b = g.tensors[op.inputs[1]], g.tensors[op.inputs[2]]
        assert F.int8_values(model, w).ravel().tolist() == [1] * w.shape[-1] and list(w.quantization.scale) == [1.0]
        assert not np.frombuffer(bytes(model.buffers[b.buffer].data), np.int32).any()
        assert op.builtinOptions.strideH == op.builtinOptions.strideW == 2
    a, b = _invoked(data, x[:16]), _invoked(fixed, x[:16])
    for op in slices:
        np.testing.assert_array_equal(a.get_tensor(int(op.outputs[0])), b.get_tensor(int(op.outputs[0])))
    np.testing.assert_array_equal(T.run(T.interpreter(data), x, batch=64), T.run(T.interpreter(fixed), x, batch=64))
    _, _, _, raw, _, _, _ = w2a2  # projection shortcuts: nothing to rewrite
    same, none = subsample_as_depthwise(raw)
    assert same is raw and none.channels == [] and none.added_bytes == 0


def test_compact_keeps_every_output_and_patches_nothing(w2a2):
    from rolekd_tf.export import flatbuf as F, tflite as T
    from rolekd_tf.export.passes import fix_int8_model
    from rolekd_tf.export.passes.compact import compact_model

    _, x, plan, raw, _, _, _ = w2a2
    data, _ = fix_int8_model(raw, plan)
    pack = F.schema().QuantizationParametersT.Pack
    small, rec = compact_model(data)
    assert F.schema().QuantizationParametersT.Pack is pack  # the schema class is not patched
    assert rec.total == len(data) - len(small) > 0 and rec.tensor_names > 0 and rec.shared_quantization_vectors > 0
    np.testing.assert_array_equal(T.run(T.interpreter(small), x[:8], batch=8), T.run(T.interpreter(data), x[:8], batch=8))


def test_verify_reports_what_the_interpreter_computes(w2a2):
    from rolekd_tf.export import tflite as T
    from rolekd_tf.export.passes.verify import Evaluation, verify

    _, x, _, _, fview, fp32, fplan = w2a2
    ref = np.asarray(fview(x[:20]))
    labels = np.arange(20) % 10
    ev = Evaluation(pixels=x[:20], labels=labels, reference=ref, reference64=None, timing_pixel=x[:1],
                    latency_repeats=3)
    same, rec = verify(fp32, ev, fplan)
    got = T.run(T.interpreter(fp32), x[:20], batch=20)
    assert same is fp32 and rec.bytes == len(fp32) and rec.input_dtype == "float32"
    assert rec.eval["accuracy"] == float(np.mean(got.argmax(1) == labels))
    assert rec.eval["top1_agreement"] == float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert rec.latency_ms > 0 and rec.eval_float64 is None
    assert {r["layer"] for r in rec.layers} >= {k for k, v in fplan.items() if v.get("w_bits") == 2}


def test_w4_stores_exact_int4_levels(w2a2):
    pytest.importorskip("ai_edge_quantizer")
    from rolekd_tf.export.passes.w4 import convert_w4, w4_layers

    _, _, _, _, _, fp32, fplan = w2a2
    data, recs = convert_w4(fp32, fplan)
    exact = [r for r in recs if r.exact_weights]
    assert sorted(r.layer for r in exact) == sorted(w4_layers(fplan))
    assert all(set(np.abs(r.int_values)) <= {2, 6} for r in exact)  # k=2: M = ⌊7/3⌋ = 2, levels ±2, ±6
