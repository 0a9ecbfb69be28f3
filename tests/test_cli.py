"""rolekd_tf.cli / rolekd_tf._quiet: a normal CLI run prints no library warnings or native log
lines on stderr; ``--verbose`` shows them."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a library warning or native log line looks like on stderr
NOISE = re.compile(r"WARNING|Warning:|cuInit|deprecat|^INFO:|^[IWE]\d{4} |fully_quantize|XNNPACK", re.I | re.M)


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A run directory with an untrained ResNet-8 w2a2 on the embedded digits."""
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.config import config_from_dict, save_config
    from rolekd_tf.fileio import save_model_atomic
    from rolekd_tf.models import build_model

    rd = tmp_path_factory.mktemp("cli") / "run"
    rd.mkdir()
    keras.utils.set_random_seed(0)
    save_config(config_from_dict({"data": {"dataset": "embedded:digits", "train_size": 200, "val_size": 50},
                                  "model": {"name": "resnet8", "w_bits": 2, "a_bits": 2}}), rd / "config.yaml")
    save_model_atomic(build_model("resnet8", num_classes=10, w_bits=2, a_bits=2), rd / "model.keras")
    return rd


def _cli(*args, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ROLEKD_VERBOSE")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_export_cli_is_quiet_unless_verbose(untrained_run):
    """The int8 export converts (the converter prints its settings natively) and runs LiteRT
    (which announces its XNNPACK delegate): none of it reaches stderr without --verbose."""
    args = ("-m", "rolekd_tf.export", str(untrained_run), "--formats", "int8", "--eval-size", "8",
            "--representative-size", "4")
    quiet = _cli(*args)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert NOISE.search(quiet.stderr) is None, quiet.stderr[-2000:]
    assert "model_int8.tflite" in quiet.stdout
    loud = _cli(*args, "--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert NOISE.search(loud.stderr) is not None  # the same run, its library lines shown


def test_train_help_lists_verbose_and_is_quiet():
    r = _cli("train.py", "--help")
    assert r.returncode == 0 and "--verbose" in r.stdout
    assert NOISE.search(r.stderr) is None, r.stderr


def test_verbose_is_accepted_by_every_cli():
    """run_cli consumes --verbose, so a CLI whose parser does not list it still accepts it."""
    r = _cli("search.py", "--help", "--verbose")
    assert r.returncode == 0 and "usage" in r.stdout.lower(), r.stderr[-1000:]


def test_quiet_libraries_hides_library_warnings_only():
    """After quiet_libraries() a warning raised inside tensorflow is hidden; one raised by user
    code still shows."""
    code = ("import warnings, rolekd_tf._quiet as q, tensorflow.python.util.deprecation as d\n"
            "q.quiet_libraries()\n"
            "exec(compile('import warnings; warnings.warn(\"lib deprecated\", UserWarning)', d.__file__, 'exec'),"
            " {'__name__': 'tensorflow.python.util.deprecation'})\n"
            "warnings.warn('user warning', UserWarning)\n")
    r = _cli("-c", code)
    assert r.returncode == 0, r.stderr[-1000:]
    assert "user warning" in r.stderr and "lib deprecated" not in r.stderr
