"""``make demo``: the whole method on the embedded default dataset, offline, on a CPU.

Runs :mod:`rolekd_tf.pipeline` with ``configs/demo.yaml`` into ``runs/demo``: every step is one of
the public commands, printed as it runs; re-running resumes.
"""
from __future__ import annotations

import sys

from rolekd_tf.cli import run_cli


def main(argv=None) -> int:
    from rolekd_tf.pipeline import run_pipeline

    run_pipeline("configs/demo.yaml", "runs/demo", list(argv or []))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
