"""Shared helpers for the reliability suite: CLI subprocesses, file snapshots, fixtures on disk."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SHIM = Path(__file__).resolve().parent / "_slow_writes.py"

# Small enough for ~10 s per run on a loaded 2-core box.
TINY = ["--set", "data.train_size=256", "--set", "data.val_size=128", "--set", "train.epochs=1",
        "--set", "train.batch_size=32", "--set", "model.name=resnet8", "--quiet"]


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               ROLEKD_NET_PROBE_HOST="none", PYTHONUNBUFFERED="1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli_cmd(tool: str, args) -> list[str]:
    """``tool``: 'train' | 'search' | 'augment' | 'export' (| 'shim-train' | 'shim-search')."""
    if tool == "train":
        return [PY, str(ROOT / "train.py"), *args]
    if tool == "search":
        return [PY, str(ROOT / "search.py"), *args]
    if tool == "augment":
        return [PY, "-m", "rolekd_tf.augment", *args]
    if tool == "export":
        return [PY, "-m", "rolekd_tf.export", *args]
    if tool in ("shim-train", "shim-search"):
        return [PY, str(SHIM), tool.split("-")[1], *args]
    raise ValueError(tool)


def run_tool(tool: str, args, *, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(tool, [str(a) for a in args]), cwd=str(cwd), env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def check_ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if p.returncode != 0:
        raise AssertionError(f"command failed ({p.returncode}): {p.args}\n--- stdout\n{p.stdout[-3000:]}"
                             f"\n--- stderr\n{p.stderr[-4000:]}")
    return p


def error_problems(p: subprocess.CompletedProcess, needle: str) -> list[str]:
    """Contract violations of a failing CLI: exit≠0, ONE stderr line 'error: …' naming ``needle``."""
    problems = []
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    if p.returncode == 0:
        problems.append("exit code 0")
    if "Traceback" in p.stderr:
        problems.append("traceback on stderr")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    elif not lines[0].startswith("error:"):
        problems.append("stderr line does not start with 'error:'")
    if needle.lower() not in p.stderr.lower():
        problems.append(f"{needle!r} not named")
    if problems:
        problems.append(f"rc={p.returncode} stderr={p.stderr[-1500:]!r}")
    return problems


# ------------------------------------------------------------------------------ snapshots
def snapshot(*roots, exclude=()) -> dict:
    """relpath → (size, mtime_ns, sha1) of every file under ``roots`` (and the folders' names)."""
    out = {}
    ex = [Path(e).resolve() for e in exclude]
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        items = [root] if root.is_file() else sorted(root.rglob("*"))
        for p in items:
            rp = p.resolve() if not p.is_symlink() else p
            if any(str(rp).startswith(str(e)) for e in ex):
                continue
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir",)
            else:
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def snapshot_diff(before: dict, after: dict) -> list[str]:
    diff = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            diff.append(f"removed {k}")
        elif k not in before:
            diff.append(f"created {k}")
        elif before[k] != after[k]:
            diff.append(f"modified {k}")
    return diff


# ------------------------------------------------------------------------------ data on disk
def write_images(class_dir: Path, n: int, *, size=32, seed=0, fmt="JPEG") -> None:
    import numpy as np
    from PIL import Image

    class_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        ext = ".jpg" if fmt == "JPEG" else ".png"
        Image.fromarray(arr).save(class_dir / f"{i:03d}{ext}", format=fmt)


def make_imagefolder(root: Path, classes=("a", "b", "c"), n=40, size=32) -> Path:
    for k, c in enumerate(classes):
        write_images(root / "train" / c, n, size=size, seed=k)
    return root


def tar_with(path: Path, members: list[tuple[str, bytes | None, str]]) -> Path:
    """Write a .tar.gz; members: (name, data, kind) with kind 'file' | 'dir' | 'sym:<target>' | 'hard:<target>'."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data, kind in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif kind.startswith("sym:"):
                ti.type = tarfile.SYMTYPE
                ti.linkname = kind[4:]
                tf.addfile(ti)
            elif kind.startswith("hard:"):
                ti.type = tarfile.LNKTYPE
                ti.linkname = kind[5:]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
    return path


def jpeg_bytes(seed=0, size=32) -> bytes:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def policy(v=0) -> list[int]:
    return [v] * 60


def our_schedule(policies) -> dict:
    from rolekd_tf.augment.policy import OP_ORDER, Schedule

    return Schedule([list(p) for p in policies]).to_json()


# ------------------------------------------------------------------------------ kill -9 helpers
def popen_tool(tool: str, args, *, cwd, env=None, log=None):
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(cli_cmd(tool, [str(a) for a in args]), cwd=str(cwd), env=env or cli_env(),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def kill9(p: subprocess.Popen) -> None:
    """SIGKILL the process group of ``p`` (only the processes this test started)."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=60)


def wait_for(pred, p: subprocess.Popen, timeout: float, poll: float = 0.002) -> bool:
    """Poll ``pred()`` until true (→ True) or the process ends / time runs out (→ False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if pred():
                return True
        except (OSError, ValueError, KeyError):  # file half-visible mid-rename: poll again
            pass
        if p.poll() is not None:
            return False
        time.sleep(poll)
    return False


def read_json(path: Path):
    return json.loads(Path(path).read_text())
