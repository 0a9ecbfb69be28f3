import pytest
import tensorflow as tf

from rolekd_tf.errors import ConfigError
from rolekd_tf.models import choose_jit_compile


def test_bools_pass_through():
    assert choose_jit_compile(True) is True
    assert choose_jit_compile(False) is False


def test_auto_follows_gpu_visibility():
    assert choose_jit_compile("auto") is bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize("bad", ["yes", "", None, 1, "true"])
def test_bad_setting(bad):
    with pytest.raises(ConfigError, match="allowed: auto, true, false"):
        choose_jit_compile(bad)
