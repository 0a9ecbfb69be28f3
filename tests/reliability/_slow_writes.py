"""Test shim: run train.py / search.py with atomic writes slowed down, so a test can kill -9 the
process *while* a chosen file is being written (its ``.tmp-*`` twin exists, the rename has not
happened yet).

    python _slow_writes.py train|search ARGS...
    env ROLEKD_TEST_SLOW_WRITE=<regex on the target file name>  ROLEKD_TEST_SLOW_SECONDS=<s>
        ROLEKD_TEST_SLOW_UNTIL=<path>  (optional: hold until that file exists, at most <s> seconds;
        a fixed sleep is not enough where the test's next commands take longer to start on a
        loaded machine)
        ROLEKD_TEST_FAIL_FIT_EPOCH=<e>  (optional: segments starting at epoch e raise)

Only the test harness uses this; the package is not modified.
"""
import contextlib
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import rolekd_tf.fileio as fileio  # noqa: E402

_orig = fileio.atomic_path
_pattern = re.compile(os.environ.get("ROLEKD_TEST_SLOW_WRITE", r"(?!)"))
_seconds = float(os.environ.get("ROLEKD_TEST_SLOW_SECONDS", "3"))
_until = os.environ.get("ROLEKD_TEST_SLOW_UNTIL")


@contextlib.contextmanager
def slow_atomic_path(path, *, is_dir=False):
    with _orig(path, is_dir=is_dir) as tmp:
        yield tmp
        if _pattern.search(Path(path).name):
            # the temporary file is complete, the rename onto ``path`` has not happened yet
            print(f"[slow-write] {path} -> {tmp.name}", flush=True)
            if _until:
                end = time.monotonic() + _seconds
                while not Path(_until).exists() and time.monotonic() < end:
                    time.sleep(0.2)
            else:
                time.sleep(_seconds)


fileio.atomic_path = slow_atomic_path

# ROLEKD_TEST_FAIL_FIT_EPOCH=<e>: every training segment that starts at epoch e raises (a fault
# in a re-run, e.g. RELIABILITY.md O2); the search engine must not mistake that for success.
_fail_epoch = os.environ.get("ROLEKD_TEST_FAIL_FIT_EPOCH")
if _fail_epoch is not None:
    import rolekd_tf.training as _training

    _orig_fit = _training.Task.fit

    def _failing_fit(self, model, *, initial_epoch, **kw):
        if int(initial_epoch) == int(_fail_epoch):
            raise RuntimeError(f"injected fault (ROLEKD_TEST_FAIL_FIT_EPOCH={_fail_epoch})")
        return _orig_fit(self, model, initial_epoch=initial_epoch, **kw)

    _training.Task.fit = _failing_fit

from rolekd_tf.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    tool, argv = sys.argv[1], sys.argv[2:]
    if tool == "train":
        sys.path.insert(0, str(ROOT))
        import importlib.util

        spec = importlib.util.spec_from_file_location("train_cli", ROOT / "train.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.exit(run_cli(mod.main, argv))
    if tool == "search":
        from rolekd_tf.search.run import main

        sys.exit(run_cli(main, argv))
    raise SystemExit(f"unknown tool {tool}")
