"""``python -m rolekd_tf.augment`` (convert / plot / show / preview)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rolekd_tf.augment.__main__ import main
from rolekd_tf.augment.policy import load_schedule

REPO = Path(__file__).resolve().parents[2]
CIFAR = Path(os.environ.get("ROLEKD_SHARED", "/work/shared")) / "data/schedules/pba-rcifar10-16-wrn.txt"

# TensorFlow's C++ runtime may print start-up lines (absl / oneDNN / CUDA) before Python runs.
_TF_NOISE = ("WARNING: All log messages before absl", "I0000 ", "W0000 ", "E0000 ", "oneDNN", "cuda")


def _stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not any(n in ln for n in _TF_NOISE)]


def _start(*args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "rolekd_tf.augment", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _pba_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    pols = [[int(rng.integers(0, 11 if i % 2 == 0 else 10)) for i in range(60)] for _ in range(4)]
    rows = [["3", "1", 3, 4, pols[0], pols[1]], ["5", "3", 8, 9, pols[1], pols[2]],
            ["3", "5", 14, 15, pols[2], pols[3]]]
    f = tmp_path / "pba.txt"
    f.write_text("\n".join(repr(r) for r in rows) + "\n")
    return f


def test_convert_subprocess(tmp_path):
    src = _pba_file(tmp_path)
    out = tmp_path / "out" / "schedule.json"
    bad = tmp_path / "bad.txt"
    bad.write_text(src.read_text().replace("['5', '3', 8, 9,", "['5', '3', 8, 'nine',"))
    # both interpreters start in parallel (each pays the package's TensorFlow import)
    good_p = _start("convert", str(src), "--epochs", "20", "--out", str(out))
    bad_p = _start("convert", str(bad), "--epochs", "20", "--out", str(tmp_path / "bad.json"))
    r, r_bad = _finish(good_p), _finish(bad_p)
    assert r.returncode == 0, r.stderr
    assert "20 epochs" in r.stdout and "[4, 5, 6, 5]" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["format"] == "rolekd-schedule" and doc["version"] == 1 and len(doc["epochs"]) == 20
    assert load_schedule(out) == load_schedule(src, 20)

    r = r_bad
    assert r.returncode == 2
    lines = _stderr_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "bad.txt: line 2" in lines[0] and "clone_epoch" in lines[0]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "bad.json").exists()


def test_convert_and_show_in_process(tmp_path, capsys):
    src = _pba_file(tmp_path)
    out = tmp_path / "s.json"
    assert main(["convert", str(src), "--epochs", "20", "--train-epochs", "40", "--out", str(out)]) == 0
    s = load_schedule(out)
    assert s.epochs == 40 and s.segment_lengths == [8, 10, 12, 10]
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "40 epochs, 4 segments" in text and "epochs    0-7" in text and "epochs   30-39" in text
    # missing --epochs for a log, non-multiple stretch, missing file: exit 2, one line
    for argv, needle in ((["show", str(src)], "need --epochs N"),
                         (["show", str(out), "--epochs", "50"], "not an integer multiple"),
                         (["show", str(tmp_path / "nope.json")], "not found")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    with pytest.raises(Exception, match="need --epochs"):
        main(["--debug", "show", str(src)])
    with pytest.raises(Exception, match="need --epochs"):
        main(["show", str(src), "--debug"])


def test_plot_cli(tmp_path, capsys):
    if not CIFAR.exists():
        pytest.skip("shared PBA schedule not available")
    out = tmp_path / "fig.png"
    assert main(["plot", str(CIFAR), "--epochs", "200", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_cli(tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main(["preview", "--n", "4", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_wiring_with_stub(tmp_path, monkeypatch, capsys):
    """The CLI's data loading + call into write_preview, with a stub preview module."""
    import types

    calls = []
    stub = types.ModuleType("rolekd_tf.augment.preview")
    stub.write_preview = lambda images, path, *, fill: calls.append((images, path, fill))
    monkeypatch.setitem(sys.modules, "rolekd_tf.augment.preview", stub)
    assert main(["preview", "--n", "3", "--out", str(tmp_path / "g.png")]) == 0
    (images, path, fill), = calls
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[0] == 3 and images.shape[-1] == 3
    assert path == str(tmp_path / "g.png") and len(fill) == 3 and all(0 <= v <= 255 for v in fill)
    assert main(["preview", "--data", f"imagefolder:{tmp_path / 'missing'}", "--out", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
