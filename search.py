#!/usr/bin/env python
"""PBT augmentation-schedule search (PBA) — see rolekd_tf/search/run.py for the full help."""
import sys

from rolekd_tf.cli import run_cli


def _main(argv):
    from rolekd_tf.search.run import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(run_cli(_main))
