"""Shared CLI plumbing: one-line errors, exit codes, no library warnings unless ``--verbose``
(what is hidden and how: :mod:`rolekd_tf._quiet`)."""
from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_USER_ERROR = 2


VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show library warnings and native TensorFlow/LiteRT log lines (hidden by default)"


def add_verbose_flag(parser) -> None:
    """``--verbose`` in a CLI's ``--help``; :func:`run_cli` acts on it and removes it before
    ``main`` parses, so every CLI run through it accepts the flag."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main``; a user error becomes ``error: <one line>`` on stderr and exit code 2.

    ``--debug`` anywhere on the command line shows the full traceback instead; ``--verbose``
    shows the library warnings a normal run hides (:mod:`rolekd_tf._quiet`).
    """
    from rolekd_tf._quiet import set_verbose, verbose

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    set_verbose(VERBOSE_FLAG in args or verbose())  # verbose(): a parent CLI's --verbose
    args = [a for a in args if a != VERBOSE_FLAG]  # handled here, whether or not main's parser lists it
    try:
        return int(main(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        from rolekd_tf.errors import RolekdError

        if debug:
            raise
        if isinstance(e, RolekdError):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(e, PermissionError):
            print(f"error: permission denied: {e.filename!r} (choose a writable --out)", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(e, OSError) and e.errno == 28:
            print(f"error: no space left on device while writing {e.filename!r}", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(e, OSError) and e.filename:  # e.g. --out below a regular file, read-only fs
            print(f"error: cannot write or read {e.filename!r}: {e.strerror or e} (check the path)",
                  file=sys.stderr)
            return EXIT_USER_ERROR
        msg = " ".join(str(e).split())[:300]
        print(f"error: internal error {type(e).__name__}: {msg} (re-run with --debug for the traceback)",
              file=sys.stderr)
        return 1
