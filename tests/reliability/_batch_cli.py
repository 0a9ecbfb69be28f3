"""Run many CLI invocations in ONE Python process (TensorFlow is imported once).

    python _batch_cli.py jobs.json results.json

``jobs.json``: ``[{"id", "tool": train|search|augment|export, "args": [...], "cwd": DIR}, …]``;
a job ``{"wait_for": PATH}`` pauses until PATH exists (lets the test snapshot files in between).
Each job runs the tool's real ``main`` through the same wrapper its ``__main__`` uses
(``rolekd_tf.cli.run_cli`` for train.py / search.py / export; the augment CLI's own ``main``), in
``cwd``, with ``sys.stdout`` / ``sys.stderr`` captured. An exception escaping the wrapper is
recorded as a traceback on stderr with exit code 1 — exactly what a separate process would show.
"""
import contextlib
import importlib.util
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def entry(tool):
    from rolekd_tf.cli import run_cli

    if tool == "train":
        spec = importlib.util.spec_from_file_location("train_cli", ROOT / "train.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return lambda argv: run_cli(mod.main, argv)
    if tool == "search":
        from rolekd_tf.search.run import main

        return lambda argv: run_cli(main, argv)
    if tool == "export":
        from rolekd_tf.export.__main__ import main

        return lambda argv: run_cli(main, argv)
    if tool == "augment":
        from rolekd_tf.augment.__main__ import main

        return main
    raise ValueError(tool)


def run_one(job):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    t = time.time()
    os.chdir(job["cwd"])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = entry(job["tool"])(list(job["args"]))
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int) and e.code is not None:
                    print(e.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what the interpreter would print
                traceback.print_exc()
                rc = 1
    finally:
        os.chdir(old)
        if "keras" in sys.modules:  # a job that never imported Keras (e.g. a config error) built no model
            try:
                import keras

                # free_memory runs gc.collect(), ~0.6 s: only after a job long enough to build a model
                keras.backend.clear_session(free_memory=time.time() - t > 1.0)
            except Exception:  # noqa: BLE001
                pass
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "seconds": time.time() - t}


def main():
    jobs = json.loads(Path(sys.argv[1]).read_text())
    results = {}
    for job in jobs:
        if "wait_for" in job:  # a barrier: the test snapshots files, then creates this file
            deadline = time.time() + 600
            while not Path(job["wait_for"]).exists() and time.time() < deadline:
                time.sleep(0.05)
            continue
        results[job["id"]] = run_one(job)
        Path(sys.argv[2]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
