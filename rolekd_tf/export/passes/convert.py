"""Pass 1, convert: an export view (Keras) → a TFLite flatbuffer (fp32, or full-integer int8).

The first pass takes the view, not bytes; every later pass takes and returns file bytes.
"""
from __future__ import annotations

import os
import re

import numpy as np

from rolekd_tf.errors import ExportError

INPUT_TYPES = ("uint8", "int8")


def _tf():
    import tensorflow as tf

    return tf


def _concrete_function(view):
    tf = _tf()
    shape = [None, *[int(d) for d in view.input_shape[1:]]]
    fn = tf.function(lambda x: view(x, training=False))
    return fn.get_concrete_function(tf.TensorSpec(shape, tf.float32, name="pixels"))


def convert_fp32(view) -> bytes:
    """Float32 TFLite flatbuffer of an export view (``mode="float"``)."""
    tf = _tf()
    fn = _concrete_function(view)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], view)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return _convert(conv, view, fn)


def convert_int8(view, representative, *, input_type: str = "uint8") -> bytes:
    """Full-integer TFLite flatbuffer of an export view (``mode="int8"``).

    ``representative``: float32 batches ``(n, H, W, 3)`` of what the view takes (pixels in [0, 255],
    or normalised images; training split) used to calibrate every tensor without a fake-quant
    range. All ops are int8 builtins; the input is ``input_type`` on the view's input fake-quant
    grid (uint8 pixels: scale 1, zero point 0; int8: pixels with zero point −128, or a normalised
    view's grid); the output is
    the float32 logits (one dequantize at the end). Every kernel is quantised per tensor here; the
    exact-grid pass (:mod:`~rolekd_tf.export.passes.grids`) writes per-channel scales where the
    plan asks for them (exact DoReFa layers, the stem, FP layers with a channel spread > 2).
    """
    tf = _tf()
    if input_type not in INPUT_TYPES:
        raise ExportError(f"int8 input_type={input_type!r}; allowed: {', '.join(INPUT_TYPES)}")
    rep = np.asarray(representative, np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    fn = _concrete_function(view)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], view)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8}[input_type]
    conv.inference_output_type = tf.float32
    # Private converter flag (listed in rolekd_tf.export's docstring): per-tensor kernels, so the
    # grids pass decides per layer which ones become per-channel.
    conv._experimental_disable_per_channel = True
    return _convert(conv, view, fn)


def _convert(converter, view, fn) -> bytes:
    from rolekd_tf._quiet import native_stderr_quiet

    try:
        with native_stderr_quiet():  # the converter prints its quantisation settings on fd 2
            return converter.convert()
    except Exception as e:  # ConverterError and friends: map op names back to layers
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(explain(e, view, fn)) from None


def _layer_names(model) -> list[str]:
    names = []
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):  # a nested model: its layers, not its own name
            names.extend(_layer_names(layer))
        else:
            names.append(layer.name)
    return names


def _graph_op_names(fn, types) -> list[str]:
    """Names of the ops of ``types`` in a concrete function and the functions it calls (from its
    GraphDef: top-level nodes and the function library)."""
    gd = fn.graph.as_graph_def()
    nodes = list(gd.node) + [n for f in gd.library.function for n in f.node_def]
    return [n.name for n in nodes if n.op in types]


_TF_OP = r"'tf\.([A-Za-z0-9_]+)'"


def explain(e: Exception, model, fn=None) -> str:
    """One line naming the Keras layer(s) whose ops the converter could not lower."""
    msg = str(e)
    ops0 = set(re.findall(_TF_OP, msg))
    if fn is not None and ops0:  # the converter's message names the op type, the graph names the layer
        msg += " " + " ".join("/" + n + "/" for n in _graph_op_names(fn, ops0))
    names = sorted(set(_layer_names(model)), key=len, reverse=True)
    hits = []
    for n in names:
        if re.search(rf"/{re.escape(n)}(_\d+)?/", msg) and not any(n in h for h in hits):
            hits.append(n)
    ops = set(re.findall(_TF_OP, msg)) | set(re.findall(r'fused\["([A-Za-z0-9_]+):', msg))
    ops = sorted(o for o in ops if o not in ("PartitionedCall", "StatefulPartitionedCall"))
    what = f"op(s) {', '.join(ops[:5])}" if ops else "an op"
    where = f"layer(s) {', '.join(repr(h) for h in hits[:5])}" if hits else "an unnamed layer"
    return f"the TFLite converter cannot lower {what} in {where} of model {model.name!r}; replace that layer or export the other formats"
