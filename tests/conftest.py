import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cifar10_tar():
    """Path of the shared CIFAR-10 JPEG archive (env ROLEKD_CIFAR10_TAR), or skip with a reason."""
    path = os.environ.get("ROLEKD_CIFAR10_TAR")
    if not path or not os.path.exists(path):
        pytest.skip("ROLEKD_CIFAR10_TAR is not set to the CIFAR-10 JPEG archive")
    return path


@pytest.fixture(autouse=True)
def _no_leaked_tuner_env():
    """Fail loudly if a test leaves Keras Tuner's distributed-mode variables behind: one stray
    KERASTUNER_ORACLE_IP makes every later search try to reach a chief."""
    keys = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID")
    before = {k: os.environ.get(k) for k in keys}
    yield
    after = {k: os.environ.get(k) for k in keys}
    if after != before:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        pytest.fail(f"test leaked Keras Tuner environment variables: {after}")


#: per class: the first TRAIN_PER_CLASS images of the shared archive go to train/, the next
#: TEST_PER_CLASS to test/ (JPEG bytes copied unchanged)
SPLIT_TAR_TRAIN_PER_CLASS = 30
SPLIT_TAR_TEST_PER_CLASS = 10


@pytest.fixture(scope="session")
def cifar10_split_tar(cifar10_tar, tmp_path_factory):
    """A small image-folder archive ``ds/train/<class>/…`` + ``ds/test/<class>/…`` cut from the
    shared CIFAR-10 archive (10 classes × 30 train + 10 test images). Returns
    ``(path, {"train"|"test": [(class, jpeg bytes), …]})`` in archive order."""
    import io
    import tarfile

    need = SPLIT_TAR_TRAIN_PER_CLASS + SPLIT_TAR_TEST_PER_CLASS
    picked: dict[str, list] = {}
    with tarfile.open(cifar10_tar, "r:gz") as src:
        for m in src:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 4 or parts[1] != "train":
                continue
            got = picked.setdefault(parts[2], [])
            if len(got) < need:
                got.append((parts[3], src.extractfile(m).read()))
            if len(picked) == 10 and all(len(v) == need for v in picked.values()):
                break
    files = {"train": [], "test": []}
    path = tmp_path_factory.mktemp("split-archive") / "cifar10-mini.tar.gz"
    with tarfile.open(path, "w:gz") as out:
        for cls in sorted(picked):
            for i, (name, data) in enumerate(picked[cls]):
                split = "train" if i < SPLIT_TAR_TRAIN_PER_CLASS else "test"
                info = tarfile.TarInfo(f"ds/{split}/{cls}/{name}")
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
                files[split].append((cls, data))
    return path, files
