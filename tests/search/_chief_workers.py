"""Start one Keras Tuner chief and workers on loopback and collect their output (shared by tests)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_chief_and_workers(cmd: list[str], timeout: float, ids=("chief", "tuner0", "tuner1")) -> dict[str, str]:
    """Run ``cmd`` once per tuner id on a free loopback port: the chief first, the workers once the
    chief listens (so no worker sits in gRPC's reconnect back-off, which grows to 2 minutes while a
    loaded machine is still importing the chief). Asserts each exits 0 within ``timeout`` seconds
    in all; on a timeout the failure shows every process's Python stacks and output.

    Returns each process's combined stdout/stderr.
    """
    port = free_port()
    base = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONFAULTHANDLER="1", KERASTUNER_ORACLE_IP="127.0.0.1",
                KERASTUNER_ORACLE_PORT=str(port))

    def start(tid):
        return subprocess.Popen(cmd, cwd=ROOT, env=dict(base, KERASTUNER_TUNER_ID=tid),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    deadline = time.monotonic() + timeout
    procs = {ids[0]: start(ids[0])}
    while not _listening(port) and procs[ids[0]].poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.update({tid: start(tid) for tid in ids[1:]})
    outs = {}
    try:
        for tid, p in procs.items():
            try:
                outs[tid] = p.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
            except subprocess.TimeoutExpired:
                raise AssertionError(f"no exit within {timeout} s; stacks and output:\n"
                                     + _dump(procs, outs)) from None
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tid, p in procs.items():
        assert p.returncode == 0, f"{tid}:\n{outs[tid][-3000:]}"
    return outs


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _dump(procs: dict[str, subprocess.Popen], outs: dict[str, str]) -> str:
    """Abort every live process (PYTHONFAULTHANDLER prints all its threads' Python stacks), then
    return each one's output tail: a hang in CI is diagnosable."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGABRT)
    time.sleep(3)
    parts = []
    for tid, p in procs.items():
        if p.poll() is None:
            p.kill()
        out = outs[tid] if tid in outs else p.communicate()[0] or ""
        parts.append(f"===== {tid} (exit {p.returncode}) =====\n{out[-6000:]}")
    return "\n".join(parts)
