"""User-facing errors.

Every problem caused by user input (a config value, a file, a CLI flag) is raised as a
:class:`RolekdError` whose message is ONE line naming the bad value and what is allowed.
The CLIs (``train.py``, ``search.py``, ``python -m rolekd_tf.*``) catch it, print
``error: <message>`` to stderr and exit with status 2 (no traceback unless ``--debug``).
"""


class RolekdError(Exception):
    """Base class: a one-line, user-facing error."""

    def __init__(self, message: str):
        # Collapse accidental newlines so the CLI contract (one line) always holds.
        super().__init__(" ".join(str(message).split()))


class ConfigError(RolekdError, ValueError):
    """Bad config key/value or CLI flag."""


class DataError(RolekdError, ValueError):
    """Missing, empty or corrupt dataset / image folder / archive."""


class ScheduleError(RolekdError, ValueError):
    """Malformed policy or schedule file."""


class ModelError(RolekdError, ValueError):
    """Unknown model, bad bit width, incompatible architecture or teacher."""


class CheckpointError(RolekdError, ValueError):
    """Missing, incompatible or corrupt run directory / checkpoint."""


class ExportError(RolekdError, ValueError):
    """A model or run that cannot be exported as asked."""
