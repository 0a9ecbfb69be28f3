"""User files are parsed as data only, never executed; archives cannot escape; the distributed
PBT oracle listens on loopback unless told otherwise. (In-process, fast; the same cases run
through the real CLIs in test_catalogue.py.)"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rolekd_tf.errors import ConfigError, DataError, ScheduleError
from tests.reliability._util import jpeg_bytes, tar_with


@pytest.mark.parametrize("doc", [
    "name: !!python/object/apply:os.system ['touch {m}']\n",
    "train: !!python/object/new:subprocess.Popen [['touch', '{m}']]\n",
    "seed: !!python/name:os.system\n",
])
def test_yaml_config_python_tags_rejected(tmp_path, doc):
    from rolekd_tf.config import load_config

    marker = tmp_path / "MARKER"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(doc.format(m=marker))
    with pytest.raises(ConfigError, match="python/"):
        load_config(cfg)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    "['1', '0', 1, 2, __import__('os').system('touch {m}'), [0]*60]",
    "__import__('os').system('touch {m}')",
    "[(lambda: __import__('os').system('touch {m}'))()]",
    "[open('{m}', 'w')]",
])
def test_pba_literal_code_is_rejected_not_executed(tmp_path, payload):
    from rolekd_tf.augment.policy import load_schedule

    marker = tmp_path / "MARKER"
    f = tmp_path / "s.txt"
    f.write_text(payload.format(m=marker) + "\n")
    with pytest.raises(ScheduleError):
        load_schedule(f, epochs=4)
    assert not marker.exists()


@pytest.mark.parametrize("member,kind,needle", [
    ("ds/train/../../evil.jpg", "file", "'..'"),
    ("../evil.jpg", "file", "'..'"),
    ("/tmp/evil.jpg", "file", "absolute"),
    ("ds/train/a/1.jpg", "sym:/etc/passwd", "symbolic link"),
    ("ds/train/a/1.jpg", "sym:../../../../../../etc/passwd", "symbolic link"),
    ("ds/train/a/1.jpg", "hard:/etc/passwd", "hard link"),
])
def test_archive_traversal_and_links_refused_nothing_escapes(tmp_path, member, kind, needle):
    from rolekd_tf.data.imagefolder import load_imagefolder

    img = jpeg_bytes()
    arch = tar_with(tmp_path / "a.tar.gz", [("ds/train/a/0.jpg", img, "file"), ("ds/train/b/0.jpg", img, "file"),
                                            (member, None if kind != "file" else img, kind)])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=needle):
        load_imagefolder(str(arch), cache_dir=str(cache))
    assert not (tmp_path / "evil.jpg").exists() and not Path("/tmp/evil.jpg").exists()
    # nothing half-extracted is left in the cache
    assert not [p for p in cache.rglob("*") if p.is_file() and p.name != ".lock"]


def test_distributed_oracle_binds_loopback_by_default(monkeypatch):
    from rolekd_tf.search.run import _distributed_role

    # _distributed_role writes the default into os.environ: give it a private copy so nothing
    # leaks into later tests (a stray KERASTUNER_ORACLE_IP turns every search distributed).
    monkeypatch.setattr(os, "environ", os.environ.copy())
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8765")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert _distributed_role() == "chief"
    assert os.environ["KERASTUNER_ORACLE_IP"] == "127.0.0.1"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "10.0.0.5")  # an explicit choice is kept
    assert _distributed_role() == "chief"
    assert os.environ["KERASTUNER_ORACLE_IP"] == "10.0.0.5"


def test_single_process_search_opens_no_port(monkeypatch):
    from rolekd_tf.search.run import _distributed_role

    monkeypatch.setattr(os, "environ", os.environ.copy())
    for k in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(k, raising=False)
    assert _distributed_role() == "single"
    assert "KERASTUNER_ORACLE_IP" not in os.environ
