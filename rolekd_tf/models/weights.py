"""Weight utilities: teacher → student initialisation and the kernels weight decay acts on."""
from __future__ import annotations

import keras

from rolekd_tf.errors import CheckpointError


def _iter_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_layers(layer)
        else:
            yield layer


def _trainable_kind(layer):
    """Variables of ``layer`` that are trainable by kind (BN gamma/beta, kernels, biases), even if
    the layer is currently frozen (``layer.trainable = False``)."""
    non_trainable = {id(v) for v in getattr(layer, "_non_trainable_variables", [])}
    tracked = getattr(layer, "_trainable_variables", None)
    if tracked is not None:
        return [v for v in tracked if id(v) not in non_trainable]
    return list(layer.trainable_weights)


def copy_trainable_weights(src: keras.Model, dst: keras.Model) -> int:
    """Copy every trainable weight of ``src`` into ``dst`` (``--init``: teacher → student).

    Layers holding trainable weights are matched in order and must agree in name and in the
    number and shapes of their trainable variables; ``dst`` may use other bit widths (latent float
    kernels are copied). Non-trainable state — BatchNorm moving mean/variance — is NOT copied, so
    the student's statistics start fresh. Raises :class:`CheckpointError` naming the first
    mismatching layer and both shapes. Returns the number of variables copied.
    """
    s_layers = [(l, _trainable_kind(l)) for l in _iter_layers(src)]
    d_layers = [(l, _trainable_kind(l)) for l in _iter_layers(dst)]
    s_layers = [(l, v) for l, v in s_layers if v]
    d_layers = [(l, v) for l, v in d_layers if v]
    pairs = []
    for i in range(max(len(s_layers), len(d_layers))):
        if i >= len(s_layers) or i >= len(d_layers):
            extra_model, (layer, _) = ((dst, d_layers[i]) if i >= len(s_layers)
                                       else (src, s_layers[i]))
            raise CheckpointError(
                f"cannot copy weights from {src.name!r} to {dst.name!r}: layer {layer.name!r} "
                f"exists only in {extra_model.name!r} ({len(s_layers)} vs {len(d_layers)} layers "
                "with trainable weights); the models must have the same architecture")
        (sl, sv), (dl, dv) = s_layers[i], d_layers[i]
        s_shapes = [tuple(v.shape) for v in sv]
        d_shapes = [tuple(v.shape) for v in dv]
        if sl.name != dl.name or s_shapes != d_shapes:
            raise CheckpointError(
                f"cannot copy weights from {src.name!r} to {dst.name!r}: layer #{i} is "
                f"{sl.name!r} with shapes {s_shapes} in the source but {dl.name!r} with shapes "
                f"{d_shapes} in the destination; the models must have the same architecture "
                "and number of classes")
        pairs.extend(zip(sv, dv))
    for s, d in pairs:
        d.assign(s.value)
    return len(pairs)


def kernel_variables(model: keras.Model) -> list:
    """The latent kernel variables of every conv/dense layer (for coupled L2 weight decay).

    Excludes biases and BatchNorm parameters. Order follows ``model.layers``.
    """
    out = []
    for layer in _iter_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                              keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
            for v in _trainable_kind(layer):
                if v.path.split("/")[-1] in ("kernel", "depthwise_kernel", "pointwise_kernel"):
                    out.append(v)
    return out
