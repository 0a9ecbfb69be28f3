"""Library chatter on stderr: one place that decides what a run of the CLIs shows.

Normal CLI runs (``train.py``, ``search.py``, ``python -m rolekd_tf.export``, ``python -m
rolekd_tf.pipeline``, ...) print no library warnings: :func:`rolekd_tf.cli.run_cli` calls
:func:`quiet_libraries`, which silences

* Python warnings raised inside keras / tensorflow / tfmot / LiteRT / ai-edge-quantizer / absl
  (deprecations, the ``tf.lite.Interpreter`` deletion warning, ...);
* the absl and ``tensorflow`` Python loggers below ERROR;
* native lines written straight to file descriptor 2 by the TFLite converter and the LiteRT
  interpreter (``fully_quantize: ...``, ``INFO: Created TensorFlow Lite XNNPACK delegate``): the
  export wraps those calls in :func:`native_stderr_quiet`.

TensorFlow's native start-up lines (oneDNN notice, CUDA probes such as the ``cuInit`` error) are
written while TensorFlow is imported, i.e. when ``rolekd_tf`` itself is imported (it registers
Keras layers): :func:`import_tensorflow_quietly` points stderr at /dev/null for that import and
the first device probe only (and sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the environment has a
value; ``python -m rolekd_tf.<cli>`` imports the package before any CLI code runs, so this is the
earliest point a CLI can set it).

``--verbose`` on any CLI (or ``ROLEKD_VERBOSE=1`` in the environment, which also reaches
subprocesses and TensorFlow's start-up lines) shows all of it. Library users who never call
:func:`quiet_libraries` keep every warning.
"""
import contextlib
import logging
import os
import sys
import warnings

#: ``1``: show library warnings and native logs (set by ``--verbose``; inherited by subprocesses)
VERBOSE_ENV = "ROLEKD_VERBOSE"
#: modules whose Python warnings a normal CLI run hides
_LIBRARIES = r"(keras|tensorflow|tf_keras|tensorflow_model_optimization|tfmot|ai_edge_litert|ai_edge_quantizer|absl|google\.protobuf|tensorflow_datasets)(\.|$)"

_quiet_native = False  # set by quiet_libraries(): native_stderr_quiet() is active


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def import_tensorflow_quietly():
    if "tensorflow" in sys.modules or verbose():
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


def set_verbose(on: bool) -> None:
    """The CLIs' switch: ``on`` shows everything (and tells subprocesses so); off calls
    :func:`quiet_libraries`."""
    global _quiet_native
    if on:
        os.environ[VERBOSE_ENV] = "1"
        _quiet_native = False
        return
    quiet_libraries()


def quiet_libraries() -> None:
    """Hide the libraries' Python warnings, their loggers below ERROR and (through
    :func:`native_stderr_quiet`) their native stderr lines, for the rest of this process."""
    global _quiet_native
    _quiet_native = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", module=_LIBRARIES)
    # raised with a stacklevel that names the caller's module: match the text instead
    warnings.filterwarnings("ignore", message=r"\s*Warning: tf\.lite\.Interpreter is deprecated")
    for name in ("absl", "tensorflow", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "absl.logging" in sys.modules:
        sys.modules["absl.logging"].set_verbosity("error")


@contextlib.contextmanager
def native_stderr_quiet():
    """Point file descriptor 2 at /dev/null for the block when a CLI asked for quiet (no-op for
    library users, with ``--verbose``, or without a real stderr). Python's own ``sys.stderr``
    writes inside the block are lost too, so keep the block to the native call."""
    if not _quiet_native or verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
