"""Atomic writes: an interrupted write leaves the old file intact and no partial file."""
import json
import os
import subprocess
import sys

import pytest

from rolekd_tf.fileio import atomic_path, atomic_write_json, clean_stale_temporaries


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_kill_during_write_never_exposes_partial_file(tmp_path):
    # A child writes a large file atomically in a loop and is SIGKILLed mid-way: the target is
    # always either absent or a complete previous version.
    target = tmp_path / "big.json"
    code = (
        "import sys; from rolekd_tf.fileio import atomic_write_json\n"
        "i = 0\n"
        "while True:\n"
        "    atomic_write_json(sys.argv[1], {'i': i, 'pad': 'x' * 2_000_000}); i += 1\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-c", code, str(target)], env=env)
    try:
        import time

        deadline = time.time() + 60
        while not target.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        p.kill()
        p.wait()
    data = json.loads(target.read_text())
    assert len(data["pad"]) == 2_000_000
    clean_stale_temporaries(tmp_path)
    assert [q.name for q in tmp_path.iterdir()] == ["big.json"]


def test_directory_target_is_replaced_whole(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_path(target, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(target, is_dir=True) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
