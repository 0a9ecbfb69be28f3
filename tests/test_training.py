"""train.py end to end on the embedded dataset: learns, resumes after kill -9, refuses mismatches."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# ResNet-8: these tests are about train.py's behaviour (run directory, resume, determinism,
# refusals), not the network; ResNet-20 made this file ~7 of the suite's ~41 worker-minutes.
TINY = [
    "--set", "data.train_size=512", "--set", "data.val_size=300", "--set", "data.holdout_size=300",
    "--set", "train.batch_size=32", "--set", "augment.cutout=0", "--set", "model.name=resnet8",
]


def train(*args, check=True, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--quiet", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"train.py failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=4", "--out", str(out))
    return out


def test_short_run_beats_chance_and_writes_run_dir(teacher_run):
    for f in ("config.yaml", "run.json", "model.keras", "metrics.json", "checkpoints/state.npz"):
        assert (teacher_run / f).exists(), f
    assert any((teacher_run / "tb").rglob("*tfevents*"))
    m = json.loads((teacher_run / "metrics.json").read_text())
    assert m["finished"] and len(m["history"]["loss"]) == 4
    # 10 balanced classes: chance is 10%. Four short epochs on digits get far above it.
    assert m["final"]["val_accuracy"] > 0.5, m["final"]
    assert m["final"]["holdout_images"] == 300
    # digits has no test split of its own: the test fields say so
    assert m["test_accuracy"] is None and m["test_examples"] == 0


def test_rerun_of_finished_run_does_nothing(teacher_run):
    before = (teacher_run / "model.keras").stat().st_mtime_ns
    p = train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=4", "--out", str(teacher_run))
    assert "already finished" in p.stdout
    assert (teacher_run / "model.keras").stat().st_mtime_ns == before


def test_run_dir_written_before_the_int8_section_is_read_and_counts_as_finished(teacher_run, tmp_path):
    """A run whose config.yaml has the old ``model.exact_*`` / ``model.shortcut`` keys: its config
    reads (keys moved into ``int8``) and re-running the same command finds it finished."""
    import shutil

    import yaml

    from rolekd_tf.training import read_run_config

    old = tmp_path / "old"
    shutil.copytree(teacher_run, old)
    raw = yaml.safe_load((old / "config.yaml").read_text())
    i8 = raw.pop("int8")
    raw["model"].update(exact_stem=i8["stem"], exact_stem_step=i8["stem_step"], shared_proj_bn=i8["shared_proj_bn"],
                        shortcut=i8["shortcut"], exact_tail=i8["tail"])
    (old / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert read_run_config(old) == read_run_config(teacher_run)
    p = train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=4", "--out", str(old))
    assert "already finished" in p.stdout


def test_other_config_in_existing_run_dir_is_refused(teacher_run):
    before = (teacher_run / "config.yaml").read_text()
    p = train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=5", "--out",
              str(teacher_run), check=False)
    assert p.returncode == 2
    assert "train.epochs" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert (teacher_run / "config.yaml").read_text() == before


def test_student_init_from_teacher(teacher_run, tmp_path):
    out = tmp_path / "w2a2"
    train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=3", "--set", "model.w_bits=2",
          "--set", "model.a_bits=2", "--set", "train.optimizer=adam", "--set", "train.lr=0.001",
          "--init", str(teacher_run), "--out", str(out))
    m = json.loads((out / "metrics.json").read_text())
    assert m["final"]["w_bits"] == 2
    # Initialised from a trained teacher, three short epochs of 2-bit fine-tuning (BN statistics
    # start fresh) are far above chance (10%).
    assert m["final"]["val_accuracy"] > 0.3


def test_init_from_other_architecture_is_refused(teacher_run, tmp_path):
    p = train("--config", "configs/quickstart.yaml", *TINY, "--set", "model.name=resnet32",
              "--init", str(teacher_run), "--out", str(tmp_path / "x"), check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "x").exists()


def test_resume_after_kill_continues_from_saved_epoch(tmp_path):
    out = tmp_path / "run"
    args = ["--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=5", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--quiet", *args], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "state.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint after 300 s")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    saved = json.loads(state.read_text())["epoch"]
    assert 2 <= saved < 5
    r = train(*args)
    assert f"resuming {out} from epoch {saved}/5" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["history"]["epoch"] == [0, 1, 2, 3, 4]
    assert m["finished"]


def test_deterministic_runs_are_bitwise_identical(tmp_path):
    import numpy as np

    args = ["--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=2",
            "--set", "train.deterministic=true", "--set", "augment.cutout=8"]
    train(*args, "--out", str(tmp_path / "a"))
    train(*args, "--out", str(tmp_path / "b"))
    a = np.load(tmp_path / "a" / "checkpoints" / "state.npz")
    b = np.load(tmp_path / "b" / "checkpoints" / "state.npz")
    keys = [k for k in a.files if k != "meta"]
    assert keys and all(np.array_equal(a[k], b[k]) for k in keys)


def test_exact_stem_variant_trains_on_centred_pixels_and_refuses_mismatched_teacher(tmp_path):
    """int8.stem: the data path feeds (pixels − 128)/64, the built model has the
    int8 stem, and a student whose input differs from its teacher's is refused in one line."""
    from rolekd_tf.config import load_config
    from rolekd_tf.models import has_exact_stem
    from rolekd_tf.training import Task, load_run_model

    sets = [a for a in TINY if a != "--set"]
    cfg = load_config(ROOT / "configs/quickstart.yaml", sets + ["int8.stem=true", "int8.shared_proj_bn=true"])
    task = Task(cfg)
    assert task.info.mean == (128 / 255,) * 3 and task.info.std == (64 / 255,) * 3
    x, _ = next(iter(task.eval_dataset("val")))
    np.testing.assert_allclose(x.numpy(), (task.splits.x_val[: len(x)] - 128.0) / 64.0, atol=1e-5)
    assert has_exact_stem(task.build_network())

    t = tmp_path / "t"
    train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=1", "--set", "int8.stem=true",
          "--set", "int8.shared_proj_bn=true", "--out", str(t))
    assert has_exact_stem(load_run_model(t))
    p = train("--config", "configs/quickstart.yaml", *TINY, "--set", "train.epochs=1", "--set", "model.w_bits=2",
              "--set", "model.a_bits=2", "--teacher", str(t), "--kd", "ii", "--out", str(tmp_path / "s"), check=False)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "int8.stem=true" in err[0] and "int8.stem=false" in err[0], p.stderr
    assert not (tmp_path / "s" / "model.keras").exists()


# ------------------------------------------------------------------ the dataset's own test split

SPLIT_TINY = ["--set", "data.train_size=250", "--set", "data.val_size=50", "--set", "data.holdout_size=0",
              "--set", "train.batch_size=50", "--set", "augment.cutout=0", "--set", "model.name=resnet8",
              "--set", "train.epochs=1"]


def _decode(files):
    """PIL + NumPy decode of (class, JPEG bytes) pairs → uint8 NHWC, labels by sorted class name."""
    import io

    from PIL import Image

    classes = sorted({c for c, _ in files})
    x = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.uint8) for _, b in files])
    y = np.array([classes.index(c) for c, _ in files], np.int32)
    return x, y


@pytest.fixture(scope="module")
def split_run(cifar10_split_tar, tmp_path_factory):
    tar, files = cifar10_split_tar
    out = tmp_path_factory.mktemp("runs") / "with-test"
    p = train("--config", "configs/quickstart.yaml", "--set", f"data.dataset=imagefolder:{tar}", *SPLIT_TINY,
              "--out", str(out))
    return out, files, p


def test_final_model_is_evaluated_on_the_test_split(split_run):
    """metrics.json test_accuracy = an independent evaluation of the saved model on the test images
    (decoded with PIL, normalised with the train images' mean/std measured in NumPy)."""
    import keras

    import rolekd_tf  # noqa: F401  (registers the layers for loading)

    out, files, p = split_run
    m = json.loads((out / "metrics.json").read_text())
    x_test, y_test = _decode(files["test"])
    x_train, _ = _decode(files["train"])
    assert m["test_examples"] == len(y_test) == 100
    assert m["final"]["test_examples"] == 100 and m["final"]["test_split"] == "test"
    assert m["final"]["train_images"] == 250 and m["final"]["val_images"] == 50
    f = x_train.astype(np.float64) / 255
    mean, std = f.mean(axis=(0, 1, 2)), f.std(axis=(0, 1, 2))
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)
    z = ((x_test.astype(np.float32) / 255.0 - mean.astype(np.float32)) / std.astype(np.float32))
    pred = np.argmax(model.predict(z, batch_size=50, verbose=0), axis=-1)
    acc = float(np.mean(pred == y_test))
    assert m["test_accuracy"] == pytest.approx(acc, abs=1e-6), (m["test_accuracy"], acc)
    assert m["final"]["test_accuracy"] == m["test_accuracy"]
    assert f"test accuracy: {100 * acc:.2f}%  (100 images" in p.stdout


def test_export_evaluates_on_the_test_split(split_run):
    """The exporter scores the exported model on the test split and says so in report.json; the
    exported pixels-in model agrees with an independent run on the raw test pixels."""
    import keras

    import rolekd_tf  # noqa: F401
    from rolekd_tf.export import export_run

    out, files, _ = split_run
    rep = export_run(out, formats="keras", float64_reference=False, latency_repeats=1, verbose=False)
    assert rep["reference"]["split"] == "test" and rep["reference"]["dataset_split"] == "test"
    assert rep["reference"]["images"] == rep["reference"]["of"] == 100
    assert json.loads((out / "export" / "report.json").read_text())["reference"]["split"] == "test"
    x_test, y_test = _decode(files["test"])
    exported = keras.saving.load_model(str(out / "export" / "model.keras"), compile=False)
    acc = float(np.mean(np.argmax(exported.predict(x_test.astype(np.float32), verbose=0), -1) == y_test))
    m = json.loads((out / "metrics.json").read_text())
    assert rep["reference"]["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert acc == pytest.approx(m["test_accuracy"], abs=1e-6)


def test_named_missing_test_split_is_a_one_line_error(cifar10_split_tar, tmp_path):
    tar, _ = cifar10_split_tar
    p = train("--config", "configs/quickstart.yaml", "--set", f"data.dataset=imagefolder:{tar}", *SPLIT_TINY,
              "--set", "data.test_split=validation", "--out", str(tmp_path / "x"), check=False)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert err[0].startswith("error: ") and "'validation'" in err[0]
    assert not (tmp_path / "x").exists()

def test_truncated_or_corrupt_model_keras_is_named_not_file_not_found(tmp_path):
    """A cut-off copy of model.keras said "File not found" (Keras' message for any bad zip)."""
    import keras

    from rolekd_tf.errors import CheckpointError
    from rolekd_tf.training import load_run_model

    x = keras.Input((8,))
    m = keras.Model(x, keras.layers.Dense(4)(x))
    good = tmp_path / "good"
    good.mkdir()
    m.save(str(good / "model.keras"))
    data = (good / "model.keras").read_bytes()
    assert load_run_model(good).output.shape[-1] == 4
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_run_model(cut)
    assert "not found" not in str(e.value).lower()
    bad = tmp_path / "bad"
    bad.mkdir()
    with __import__("zipfile").ZipFile(good / "model.keras") as z:  # a byte flipped inside the weights
        info = z.getinfo("model.weights.h5")
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    (bad / "model.keras").write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:])
    with pytest.raises(CheckpointError, match="corrupt.*model.weights.h5.*CRC"):
        load_run_model(bad)


def test_damaged_run_files_are_one_line_errors(tmp_path):
    from rolekd_tf.config import load_config
    from rolekd_tf.errors import CheckpointError
    from rolekd_tf.training import _existing_run, _provenance

    cfg = load_config(None)
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "run.json").write_bytes(b'{"role": "teacher\xff"}')
    with pytest.raises(CheckpointError, match="run.json.*damaged.*not UTF-8"):
        _existing_run(run, cfg.to_yaml(), _provenance("teacher", None, None, None))
    (run / "run.json").write_text('{"role": ')
    with pytest.raises(CheckpointError, match="run.json.*damaged.*invalid JSON"):
        _existing_run(run, cfg.to_yaml(), _provenance("teacher", None, None, None))
