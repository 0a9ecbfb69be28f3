"""Export of a run directory: ``RUN_DIR/export/`` with ``model.keras`` (trainable, preprocessing
inside), ``saved_model/``, ``model_fp32.tflite``, ``model_int8.tflite`` (exact DoReFa grids),
``labels.txt`` and ``report.json``. CLI: ``python -m rolekd_tf.export RUN_DIR [--formats ...]``.

Every exported model takes RGB pixels in [0, 255] (float32; uint8 for the int8 TFLite file),
shape ``(N, H, W, 3)``, normalises inside the graph and returns class logits (order = labels.txt).
"""
from rolekd_tf.export.run import DEFAULT_FORMATS, FORMATS, export_run, parse_formats

__all__ = ["export_run", "FORMATS", "DEFAULT_FORMATS", "parse_formats"]
