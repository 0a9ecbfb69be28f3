"""SavedModel export of the wrapped (pixels → logits) model, serving signature ``serving_default``."""
from __future__ import annotations

import os

from rolekd_tf.errors import ExportError
from rolekd_tf.fileio import atomic_path

SIGNATURE = "serving_default"
INPUT_NAME = "pixels"


def export_saved_model(wrapped, path) -> None:
    """Write ``path/`` (atomically) with signature ``serving_default(pixels: float32 [N,H,W,3])``.

    Inference only: SavedModels lose ``tf.custom_gradient`` on reload (docs/METHOD.md §7), so fine-tuning
    must use ``export/model.keras``.
    """
    import tensorflow as tf

    shape = [None, *[int(d) for d in wrapped.input_shape[1:]]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    def serve(pixels):
        return {"logits": wrapped(pixels, training=False)}

    module = tf.Module()
    module.model = wrapped
    module.serve = serve
    try:
        with atomic_path(path, is_dir=True) as tmp:
            tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: serve})
    except Exception as e:
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(f"cannot write the SavedModel {str(path)!r}: {type(e).__name__}: {str(e)[:200]}") from None


def load_serving_fn(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[SIGNATURE]
    fn._rolekd_keepalive = loaded  # noqa: SLF001 (keep the trackable alive)
    return fn
