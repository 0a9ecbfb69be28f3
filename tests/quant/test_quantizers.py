"""Quantiser objects: forward against the NumPy reference, typed read-only attributes, round trips
through ``.keras`` without ``custom_objects``, layers holding them, and ``.keras`` configs of the
format before quantiser objects."""
import numpy as np
import pytest
import keras

import rolekd_tf  # noqa: F401  (registers the layers and quantisers)
from rolekd_tf.errors import ModelError
from rolekd_tf.quant import (ActivationQuantizer, DoReFaActivations, DoReFaWeights, FullPrecision, Int8Grid,
                             QuantConv2D, QuantDense, weight_quantizer)
from tests.quant import _numpy_ref as ref

KERNEL_QUANTIZERS = [FullPrecision(), DoReFaWeights(1), DoReFaWeights(2), DoReFaWeights(8), Int8Grid(),
                     Int8Grid(12), Int8Grid(3, gain=4.0)]


def _int8_grid_ref(w, step, gain):
    """NumPy: per output channel (last axis) round(w/s)·s, s = max|w|/⌊127/step⌋, times gain."""
    s = np.max(np.abs(w.reshape(-1, w.shape[-1])), 0) / (127 // step)
    return np.round(w / s) * s * gain


def test_forward_matches_numpy_reference():
    w = (np.random.default_rng(0).normal(size=(3, 3, 4, 5)) * 0.3).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(FullPrecision()(w)), w)
    for k in (1, 2, 5):
        np.testing.assert_allclose(np.asarray(DoReFaWeights(k)(w)), ref.weight_forward(w, k), atol=1e-6)
    for k in (1, 3, 32):
        np.testing.assert_allclose(np.asarray(DoReFaActivations(k)(w)), ref.activation_forward(w, k), atol=1e-6)
    for step, gain in ((1, 1.0), (12, 1.0), (3, 4.0)):
        np.testing.assert_allclose(np.asarray(Int8Grid(step, gain)(w)), _int8_grid_ref(w.astype(np.float64), step, gain),
                                   rtol=1e-5, atol=1e-6)


def test_typed_read_only_attributes():
    q = DoReFaWeights(2)
    assert (q.bits, q.steps, q.levels) == (2, 3, 4)
    a = DoReFaActivations(4)
    assert (a.bits, a.steps, a.levels) == (4, 15, 16)
    assert (DoReFaActivations(32).steps, DoReFaActivations(32).levels) == (None, None)
    g = Int8Grid(12, gain=2)
    assert (g.bits, g.step, g.max_int, g.levels, g.gain) == (8, 12, 10, 21, 2.0)
    assert (FullPrecision().bits, FullPrecision().levels) == (32, None)
    for obj, attr in ((q, "bits"), (g, "step"), (g, "gain"), (a, "bits")):
        with pytest.raises(AttributeError):
            setattr(obj, attr, 3)
    assert DoReFaWeights(2) == DoReFaWeights(2) != DoReFaWeights(3) and Int8Grid() != FullPrecision()
    assert weight_quantizer(32) == FullPrecision() and weight_quantizer(3) == DoReFaWeights(3)


@pytest.mark.parametrize("make, match", [
    (lambda: DoReFaWeights(0), "w_bits=0 is out of range"),
    (lambda: DoReFaWeights(32), "w_bits=32 is full precision"),
    (lambda: DoReFaWeights(2.5), "w_bits=2.5 is not an integer"),
    (lambda: DoReFaActivations(9), "a_bits=9 is out of range"),
    (lambda: Int8Grid(0), "step=0 is invalid; allowed: an integer in 1..42"),
    (lambda: Int8Grid(1, gain=float("nan")), "gain=nan is invalid"),
    (lambda: Int8Grid(1, gain=-1.0), "gain=-1.0 is invalid"),
    (lambda: QuantConv2D(4, 3, kernel_quantizer=2), "is not a quantiser"),
    (lambda: ActivationQuantizer(DoReFaWeights(2)), "is not an activation quantiser"),
])
def test_bad_quantizers_are_one_line_model_errors(make, match):
    with pytest.raises(ModelError, match=match) as e:
        make()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("q", KERNEL_QUANTIZERS + [DoReFaActivations(2), DoReFaActivations(32)], ids=repr)
def test_serialisation_round_trip(q):
    ser = keras.saving.serialize_keras_object(q)
    assert ser["registered_name"] == f"rolekd_tf>{type(q).__name__}"
    back = keras.saving.deserialize_keras_object(ser)
    assert type(back) is type(q) and back == q


def test_each_quantizer_round_trips_through_keras_file_without_custom_objects(tmp_path):
    """One model with every kernel quantiser in a conv and a dense layer, and every activation
    quantiser: saved, loaded with no ``custom_objects``, the same objects and the same outputs."""
    inp = keras.Input((6, 6, 3))
    x, names = inp, []
    for i, q in enumerate(KERNEL_QUANTIZERS):
        x = QuantConv2D(3, 3, padding="same", kernel_quantizer=q, name=f"conv{i}")(x)
        x = ActivationQuantizer(DoReFaActivations([2, 4, 32][i % 3]), name=f"act{i}")(x)
        names += [f"conv{i}", f"act{i}"]
    x = keras.layers.Flatten()(x)
    outs = [QuantDense(2, kernel_quantizer=q, name=f"dense{i}")(x) for i, q in enumerate(KERNEL_QUANTIZERS)]
    m = keras.Model(inp, outs)
    m.save(tmp_path / "q.keras")
    m2 = keras.saving.load_model(tmp_path / "q.keras", compile=False)
    for i, q in enumerate(KERNEL_QUANTIZERS):
        assert m2.get_layer(f"conv{i}").kernel_quantizer == q and m2.get_layer(f"dense{i}").kernel_quantizer == q
        assert m2.get_layer(f"act{i}").quantizer == DoReFaActivations([2, 4, 32][i % 3])
    xin = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype(np.float32)
    for a, b in zip(m(xin), m2(xin)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_layers_hold_the_objects_and_derive_bits_from_them():
    c = QuantConv2D(4, 3, kernel_quantizer=DoReFaWeights(2))
    assert c.kernel_quantizer == DoReFaWeights(2) and c.w_bits == 2 and c.is_quantized
    g = QuantDense(4, kernel_quantizer=Int8Grid(4))
    assert g.w_bits == 32 and not g.is_quantized and g.int8_weights and g.int8_step == 4
    d = QuantDense(4)
    assert d.kernel_quantizer == FullPrecision() and d.w_bits == 32 and not d.int8_weights
    a = ActivationQuantizer(DoReFaActivations(3))
    assert a.a_bits == 3 and a.is_quantized
    for layer in (c, g):
        with pytest.raises(AttributeError):
            layer.w_bits = 4


@pytest.mark.parametrize("legacy, expect", [
    ({"w_bits": 2}, DoReFaWeights(2)),
    ({"w_bits": 32}, FullPrecision()),
    ({"w_bits": 32, "int8_weights": True}, Int8Grid(1)),
    ({"w_bits": 32, "int8_weights": True, "int8_step": 12}, Int8Grid(12)),
    ({"w_bits": 32, "int8_weights": True, "kernel_gain": 4.0}, Int8Grid(1, gain=4.0)),
])
def test_configs_before_quantizer_objects_still_load(legacy, expect):
    """``.keras`` files written before quantisers were objects stored ``w_bits`` / ``int8_weights`` /
    ``int8_step`` / ``kernel_gain`` (and ``a_bits``) in the layer config: they load as the objects."""
    for cls, args in ((QuantConv2D, {"filters": 4, "kernel_size": 3}), (QuantDense, {"units": 4})):
        cfg = cls(**args).get_config()
        cfg.pop("kernel_quantizer")
        layer = cls.from_config({**cfg, **legacy})
        assert layer.kernel_quantizer == expect
    cfg = ActivationQuantizer(DoReFaActivations(2)).get_config()
    cfg.pop("quantizer")
    assert ActivationQuantizer.from_config({**cfg, "a_bits": 4}).quantizer == DoReFaActivations(4)
