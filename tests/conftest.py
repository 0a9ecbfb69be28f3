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
