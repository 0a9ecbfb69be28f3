"""Start one Keras Tuner chief and workers on loopback and collect their output (shared by tests)."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_chief_and_workers(cmd: list[str], timeout: float, ids=("chief", "tuner0", "tuner1")) -> dict[str, str]:
    """Run ``cmd`` once per tuner id (chief first) on a free loopback port; assert each exits 0.

    Returns each process's combined stdout/stderr.
    """
    base = dict(os.environ, PYTHONPATH=str(ROOT), KERASTUNER_ORACLE_IP="127.0.0.1",
                KERASTUNER_ORACLE_PORT=str(free_port()))
    procs = {tid: subprocess.Popen(cmd, cwd=ROOT, env=dict(base, KERASTUNER_TUNER_ID=tid),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for tid in ids}
    outs = {}
    try:
        for tid, p in procs.items():
            outs[tid] = p.communicate(timeout=timeout)[0]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for tid, p in procs.items():
        assert p.returncode == 0, f"{tid}:\n{outs[tid][-3000:]}"
    return outs
