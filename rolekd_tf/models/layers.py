"""Weightless model layers (registered, so ``keras.saving.load_model`` needs no custom objects)."""
from __future__ import annotations

import keras
from keras import ops

from rolekd_tf.errors import ModelError


@keras.saving.register_keras_serializable(package="rolekd_tf")
class ZeroPadShortcut(keras.layers.Layer):
    """He et al.'s CIFAR "option A" shortcut: the input subsampled with ``strides`` (rows/columns
    ``0, s, 2s, …`` — the positions a 1×1 'same' conv with that stride reads) and zero-padded on
    the channel axis to ``channels`` (``(channels − c_in)//2`` zero channels before, the rest
    after). No weights; values are only copied or 0, so an input on a k-bit grid stays on it."""

    def __init__(self, channels: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.strides = int(strides)
        if self.channels < 1 or self.strides < 1:
            raise ModelError(f"ZeroPadShortcut {kwargs.get('name')!r}: channels={channels!r}, strides={strides!r} must be >= 1")

    def _pads(self, cin: int):
        extra = self.channels - int(cin)
        if extra < 0:
            raise ModelError(f"ZeroPadShortcut {self.name!r}: input has {cin} channels > channels={self.channels}")
        return extra // 2, extra - extra // 2

    def call(self, inputs):
        s = self.strides
        x = inputs[:, ::s, ::s, :] if s > 1 else inputs
        before, after = self._pads(inputs.shape[-1])
        if before or after:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, after]])
        return x

    def compute_output_shape(self, input_shape):
        s = self.strides
        hw = [None if d is None else -(-int(d) // s) for d in input_shape[1:3]]
        self._pads(input_shape[-1])
        return (input_shape[0], *hw, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, strides=self.strides)
        return config


@keras.saving.register_keras_serializable(package="rolekd_tf")
class ChannelZeroPad(keras.layers.Layer):
    """Append zero channels so the output has ``channels`` channels: ``[x, 0, …, 0]`` on the last
    axis (PyramidNet's zero-padded identity shortcut, Han et al. 2017: the new channels come after
    the input's, unlike :class:`ZeroPadShortcut` which splits them around it). No weights."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        if self.channels < 1:
            raise ModelError(f"ChannelZeroPad {kwargs.get('name')!r}: channels={channels!r} must be >= 1")

    def _extra(self, cin) -> int:
        extra = self.channels - int(cin)
        if extra < 0:
            raise ModelError(f"ChannelZeroPad {self.name!r}: input has {cin} channels > channels={self.channels}")
        return extra

    def call(self, inputs):
        extra = self._extra(inputs.shape[-1])
        if not extra:
            return inputs
        return ops.pad(inputs, [[0, 0]] * (len(inputs.shape) - 1) + [[0, extra]])

    def compute_output_shape(self, input_shape):
        self._extra(input_shape[-1])
        return (*input_shape[:-1], self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels)
        return config
