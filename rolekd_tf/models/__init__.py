"""Model zoo: CIFAR ResNets, PreResNets, WRNs, PyramidNets and AlexNet, full precision or DoReFa k-bit, with
named KD feature taps (``tap_1 … tap_n``, ``logits``)."""
from rolekd_tf.models.device import choose_jit_compile
from rolekd_tf.models.layers import ZeroPadShortcut
from rolekd_tf.models.normalisation import (
    exact_stem_normalisation,
    has_exact_stem,
    input_normalisation,
    model_normalisation,
    preprocessing_layer,
)
from rolekd_tf.models.registry import (
    MODELS,
    available_models,
    build_model,
    get_builder,
    register_model,
)
from rolekd_tf.models.taps import feature_model, tap_layer_names
from rolekd_tf.models.weights import copy_trainable_weights, kernel_variables

__all__ = [
    "MODELS",
    "ZeroPadShortcut",
    "available_models",
    "build_model",
    "choose_jit_compile",
    "copy_trainable_weights",
    "exact_stem_normalisation",
    "feature_model",
    "get_builder",
    "has_exact_stem",
    "input_normalisation",
    "kernel_variables",
    "model_normalisation",
    "preprocessing_layer",
    "register_model",
    "tap_layer_names",
]
