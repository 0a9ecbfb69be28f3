"""Export of a run directory: ``RUN_DIR/export/`` with ``model.keras`` (trainable, preprocessing
inside), ``saved_model/``, ``model_fp32.tflite``, ``model_int8.tflite`` (exact DoReFa grids),
``model_w4.tflite`` (int4 weights, where they apply), ``labels.txt`` and ``report.json``.
CLI: ``python -m rolekd_tf.export RUN_DIR [--formats ...]``.

Every exported model takes RGB pixels in [0, 255] (float32; uint8 for the int8 TFLite file),
shape ``(N, H, W, 3)``, normalises inside the graph and returns class logits (order = labels.txt).
Export option ``--int8-input normalised`` gives the int8 file tfmot's input contract instead: the
normalised image as int8, normalised and quantised by the caller (report.json: ``input``);
``--integer-output`` makes it return its integer logits (no float op in the file).

Modules: :mod:`~rolekd_tf.export.run` (the driver), :mod:`~rolekd_tf.export.graph` (export graphs
and int8-exactness rules) with :mod:`~rolekd_tf.export.view` (the per-layer view builder) and
:mod:`~rolekd_tf.export.plan` (its typed plan), :mod:`~rolekd_tf.export.passes` (convert → exact
weight grids → bias fit → logits → (integer output) → compact → verify, each file bytes → file bytes + a record),
:mod:`~rolekd_tf.export.flatbuf` (flatbuffer objects), :mod:`~rolekd_tf.export.tflite` (the
LiteRT runtime), :mod:`~rolekd_tf.export.report`, :mod:`~rolekd_tf.export.savedmodel`,
:mod:`~rolekd_tf.export.reference` (the float64 twin).

Private APIs that remain, and why (each has no public equivalent in the versions we support):

* ``TFLiteConverter._experimental_disable_per_channel`` (``passes/convert.py``): the converter
  has no public switch for per-tensor kernels; the grids pass then chooses per layer which
  kernels become per-channel (exact DoReFa grids, the stem, FP kernels with a channel spread > 2).
  Letting the converter go per-channel would change every other layer's quantisation.
* ``Interpreter._get_ops_details()`` (``tflite.weight_tensors``, report/tests only): LiteRT's
  interpreter has no public per-op listing; it is the interpreter's own view of the op list the
  report's layer table must agree with.
* ``KerasTensor._keras_history`` / ``Layer._outbound_nodes`` (``graph.py`` helpers, ``view.py``):
  Keras 3 has no public producer/consumer lookup for a functional graph's layers.
* ``tensorflow.lite.python.schema_py_generated`` / ``tensorflow.lite.tools.flatbuffer_utils``:
  only where ``ai_edge_litert`` (whose public ``schema_py_generated`` and
  ``tools.flatbuffer_utils`` :mod:`~rolekd_tf.export.flatbuf` uses) is not installed.
"""
from rolekd_tf.export.run import DEFAULT_FORMATS, FORMATS, export_run, parse_formats

__all__ = ["export_run", "FORMATS", "DEFAULT_FORMATS", "parse_formats"]
