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
