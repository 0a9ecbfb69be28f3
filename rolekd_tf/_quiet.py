"""Silence TensorFlow's native start-up chatter (oneDNN/CUDA probes) on stderr.

TF 2.21 writes these lines through absl before ``TF_CPP_MIN_LOG_LEVEL`` is honoured, which would
break the CLIs' contract that a user error is *one* line on stderr. Only the import and the first
device probe run with the native stderr pointed at /dev/null; everything after is untouched.
Set ``ROLEKD_TF_STARTUP_LOGS=1`` to see them.
"""
import os
import sys


def import_tensorflow_quietly():
    if "tensorflow" in sys.modules or os.environ.get("ROLEKD_TF_STARTUP_LOGS") == "1":
        import tensorflow as tf  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters)
        import tensorflow as tf  # noqa: F401

        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
