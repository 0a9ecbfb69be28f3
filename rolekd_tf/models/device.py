"""Device-dependent defaults."""
from __future__ import annotations

import tensorflow as tf

from rolekd_tf.errors import ConfigError


def choose_jit_compile(setting) -> bool:
    """Resolve a ``jit_compile`` setting.

    ``True``/``False`` pass through. ``"auto"`` → ``True`` when a GPU is visible, ``False`` on
    CPU-only machines (XLA made ResNet-20 training *slower* on the 2-core CPU, see
    ``benchmarks/results/jit_compile.md``). Anything else raises :class:`ConfigError`.
    """
    if isinstance(setting, bool):
        return setting
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    raise ConfigError(f"jit_compile={setting!r} is invalid; allowed: auto, true, false")
