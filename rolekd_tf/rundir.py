"""Run and search directory lifecycle: contained names, output location, ownership, lock, --overwrite.

One source of truth for ``train.py``, ``search.py`` and ``python -m rolekd_tf.export``:

* **Names** (``name`` in a config → ``runs/<name>``, ``searches/<name>-<role>``) are one path
  component: :func:`check_name`.
* **Output location**: :func:`check_out` — never ``/``, never the working directory (or one of
  its ancestors), never a directory holding an input of the same command (teacher, ``--init``,
  schedule file, image-folder dataset, config file).
* **Ownership marker** ``.rolekd`` (JSON: ``kind`` run|search, ``pid``, ``host``, ``created``),
  written right after the directory is created and locked. Directories written before markers
  existed count as ours when they hold ``config.yaml`` plus ``run.json`` (runs) or
  ``search.json`` (searches); the marker is added the next time they are used.
* **Lock** ``.rolekd.lock``: an ``fcntl.flock`` held on an open descriptor for as long as a
  command uses the directory; its text (pid, host, start time, command) names the holder in the
  refusal. ``kill -9`` closes the descriptor, so the kernel drops the lock: a lock file whose
  flock nobody holds is stale and is simply taken over. (flock is per host: on a shared file
  system across machines the pid/host text is informative only.)
* **--overwrite**: :func:`inspect` (read-only) decides first; after every other check passed,
  :func:`claim` moves the old directory aside to ``<out>.old-<pid>`` (beside it), creates and
  locks the new one, and :meth:`Claim.started` deletes the aside copy once the new run has
  written its config (so a refused or failing start restores the old directory instead).
  ``kill -9`` between the rename and :meth:`Claim.started` leaves ``<out>.old-<pid>``: the next
  ``--overwrite`` of the same ``<out>`` deletes such leftovers after it started cleanly; any other
  command ignores them (each is a complete old run directory that can be resumed or inspected
  with ``--out <out>.old-<pid>``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from rolekd_tf.errors import CheckpointError, ConfigError

MARKER = ".rolekd"
LOCK = ".rolekd.lock"
#: legacy (pre-marker) evidence that a directory is ours: config.yaml plus this file
_LEGACY = {"run": "run.json", "search": "search.json"}
_WHAT = {"run": "run directory", "search": "search directory"}
_TOOL = {"run": "train.py", "search": "search.py"}


class LockedError(CheckpointError):
    """The directory is in use by another live process."""


def check_name(value, key: str = "name") -> str:
    """``value`` as a run/search name: one non-empty path component (not ``.``/``..``, no
    ``/``, ``\\`` or NUL, no surrounding spaces)."""
    if (not isinstance(value, str) or not value or value.strip() != value or value in (".", "..")
            or any(c in value for c in "/\\\0")):
        raise ConfigError(f"{key}={value!r} must be a single path component (a non-empty name without "
                          "'/', '\\', NUL or surrounding spaces, not '.' or '..'): it names runs/<name>")
    return value


def _resolve(p) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(p)))).resolve()


def _contains(parent: Path, child: Path) -> bool:
    return parent == child or parent in child.parents


def dataset_path(dataset: str) -> str | None:
    """The local path of an ``imagefolder:PATH`` dataset (None for TFDS / embedded)."""
    return dataset.split(":", 1)[1] if dataset.startswith("imagefolder:") else None


def check_out(out, inputs: Mapping[str, object] | None = None, *, flag: str = "--out") -> Path:
    """Refuse an output location that would hold (and with --overwrite delete) something else.

    ``inputs``: label → path (None skipped) of every file/folder the same command reads.
    Returns the resolved ``out``.
    """
    o = _resolve(out)
    if o == Path(o.anchor):
        raise ConfigError(f"{flag} {str(out)!r} is the file-system root; choose a directory of its own")
    cwd = _resolve(os.getcwd())
    if _contains(o, cwd):
        raise ConfigError(f"{flag} {str(out)!r} is the working directory or contains it; choose a "
                          "directory of its own (e.g. runs/<name>)")
    for label, p in (inputs or {}).items():
        if not p:
            continue
        if _contains(o, _resolve(p)):
            raise ConfigError(f"{flag} {str(out)!r} is or contains the {label} {str(p)!r} of the same "
                              "command; choose another output directory")
    return o


# ------------------------------------------------------------------------------ markers
def read_marker(d: Path) -> dict | None:
    try:
        m = json.loads((Path(d) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def is_ours(d: Path, kind: str) -> bool:
    """True for a ``kind`` directory this project created (marker, or legacy config + json)."""
    d = Path(d)
    m = read_marker(d)
    if m is not None:
        return m.get("kind") == kind
    return (d / "config.yaml").is_file() and (d / _LEGACY[kind]).is_file() and not (d / MARKER).exists()


def _stamp(kind: str) -> dict:
    return {"kind": kind, "pid": os.getpid(), "host": socket.gethostname(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def inspect(out, kind: str, *, overwrite: bool) -> str:
    """Read-only look at ``out`` before anything is validated or written.

    Returns ``"absent"`` (nothing there), ``"empty"`` (an empty directory) or ``"ours"`` (a
    ``kind`` directory this project made). Refuses a file, a foreign non-empty folder, a directory
    of the other kind, and one whose lock another live process holds.
    """
    d = Path(out)
    what = _WHAT[kind]
    if not d.exists() and not d.is_symlink():
        return "absent"
    if not d.is_dir():
        raise CheckpointError(f"{str(d)!r} exists and is not a directory; choose another output directory")
    try:
        empty = not any(d.iterdir())
    except PermissionError:
        raise CheckpointError(f"{str(d)!r} cannot be listed (permission denied); choose another output "
                              "directory") from None
    if empty:
        return "empty"
    if not is_ours(d, kind):
        m = read_marker(d)
        if m is not None and m.get("kind") in _WHAT:
            raise CheckpointError(f"{str(d)!r} is a {_WHAT[m['kind']]}, not a {what}; choose another "
                                  "output directory")
        raise CheckpointError(
            f"{str(d)!r} exists and is not a {what} made by {_TOOL[kind]} (no {MARKER} marker"
            f", no config.yaml + {_LEGACY[kind]}); it is never written into"
            f"{' or deleted (--overwrite)' if overwrite else ''}: choose another output directory")
    h = lock_holder(d)
    if h is not None:
        raise LockedError(_locked_message(d, kind, h))
    return "ours"


# ------------------------------------------------------------------------------ locks
def _read_lock_text(p: Path) -> dict:
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def lock_holder(d) -> dict | None:
    """Who holds ``d``'s lock ({pid, host, started, command}), or None; writes nothing."""
    p = Path(d) / LOCK
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_lock_text(p)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _locked_message(d: Path, kind: str, h: dict) -> str:
    who = f"pid {h.get('pid', '?')} on host {h.get('host', '?')}"
    cmd = f" ({h['command']})" if h.get("command") else ""
    since = f" since {h['started']}" if h.get("started") else ""
    return (f"{_WHAT.get(kind, 'directory')} {str(d)!r} is in use by {who}{cmd}{since}; wait for it "
            "to finish or stop it (a lock left by a killed process is taken over automatically)")


class DirLock:
    """An exclusive ``flock`` on ``DIR/.rolekd.lock`` for this process (see the module doc)."""

    def __init__(self, d, kind: str, command: str):
        self.dir = Path(d)
        self.kind = kind
        self.command = command
        self.fd: int | None = None
        self.took_over: dict | None = None

    def acquire(self) -> "DirLock":
        p = self.dir / LOCK
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # a read-only probe (lock_holder) takes a shared lock for a moment: retry briefly
        for attempt in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    info = _read_lock_text(p)
                    os.close(fd)
                    raise LockedError(_locked_message(self.dir, self.kind, info)) from None
                time.sleep(0.05)
        old = _read_lock_text(p)
        if old.get("pid") is not None:
            self.took_over = old  # the flock was free: its holder ended (e.g. kill -9)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        # Written in place, not via fileio's rename: the lock lives on this inode. The text is
        # informative only (the flock is the lock), so a torn write cannot do harm.
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)  # a released lock names nobody
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _command() -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv[:1] + sys.argv[1:6]))


# ------------------------------------------------------------------------------ claiming
@dataclass
class Claim:
    """A directory this process owns (locked) for one command; see :func:`claim`."""

    dir: Path
    kind: str
    fresh: bool  #: created (or found empty) by this process: holds nothing of an earlier run
    aside: Path | None = None  #: the old directory moved aside by --overwrite, until started()
    _overwrote: bool = False
    _locks: list = field(default_factory=list)
    _started: bool = False

    def started(self) -> None:
        """The new run wrote its config: delete the directory moved aside by --overwrite (and
        leftovers of earlier --overwrite runs of the same directory killed before this point)."""
        self._started = True
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None
        pat = re.compile(re.escape(self.dir.name) + r"\.old-\d+(-\d+)?$")
        for p in self.dir.parent.iterdir() if self.fresh and self._overwrote else ():
            if pat.match(p.name) and p.is_dir() and is_ours(p, self.kind) and lock_holder(p) is None:
                shutil.rmtree(p, ignore_errors=True)
        for lk in self._locks[1:]:  # the old directory's lock, now deleted with it
            lk.release()
        del self._locks[1:]


def _aside_name(d: Path) -> Path:
    base = d.parent / f"{d.name}.old-{os.getpid()}"
    p, n = base, 0
    while p.exists() or p.is_symlink():
        n += 1
        p = Path(f"{base}-{n}")
    return p


@contextlib.contextmanager
def claim(out, kind: str, state: str, *, overwrite: bool, shared=()) -> Iterator[Claim]:
    """Lock ``out`` (creating it, or replacing it for ``--overwrite``) for the ``with`` body.

    ``state``: what :func:`inspect` returned (call it, and every other check, first).
    ``shared``: entry names that processes sharing the directory (distributed search workers,
    which never lock) may create before the lock is taken.
    The lock is released when the body ends (normally, by an exception, or by ``kill -9``).
    """
    d = Path(out)
    cmd = _command()
    locks: list[DirLock] = []
    aside = None
    c = None
    try:
        if state == "ours" and overwrite:
            old_lock = DirLock(d, kind, cmd).acquire()  # nobody may be using what we replace
            locks.append(old_lock)
            aside = _aside_name(d)
            os.rename(d, aside)
            state = "absent"
        d.mkdir(parents=True, exist_ok=True)
        lk = DirLock(d, kind, cmd).acquire()
        locks.insert(0, lk)
        if lk.took_over:
            print(f"note: took over the lock of {str(d)!r} left by pid {lk.took_over.get('pid')} on "
                  f"{lk.took_over.get('host')} (that process is gone)", flush=True)
        if state in ("absent", "empty"):
            # another process may have created the directory between inspect() and the lock
            others = [p.name for p in d.iterdir() if p.name not in (LOCK, MARKER, *shared)]
            if others:
                raise LockedError(f"{_WHAT[kind]} {str(d)!r} was created by another process while this "
                                  "one was starting; re-run the command")
        if read_marker(d) is None:
            from rolekd_tf.fileio import atomic_write_json

            atomic_write_json(d / MARKER, _stamp(kind))
        c = Claim(d, kind, fresh=state in ("absent", "empty"), aside=aside, _locks=locks,
                  _overwrote=aside is not None)
        yield c
    except BaseException:
        if aside is not None and (c is None or not c._started) and aside.exists():
            # the new run never started cleanly: put the old directory back
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rename(aside, d)
        raise
    finally:
        for lk in locks:
            lk.release()
