"""Quantisation: the DoReFa math (:mod:`.dorefa`), quantiser objects (:mod:`.quantizers`) and the
Keras layers that hold them (:mod:`.layers`). Bit widths: :data:`rolekd_tf.config.ALLOWED_BITS`."""
from rolekd_tf.config import ALLOWED_BITS
from rolekd_tf.quant.dorefa import (
    quantize_activation,
    quantize_int8_per_channel,
    quantize_k,
    quantize_weight,
    round_ste,
    validate_bits,
)
from rolekd_tf.quant.layers import ActivationQuantizer, QuantConv2D, QuantDense
from rolekd_tf.quant.quantizers import (
    DoReFaActivations,
    DoReFaWeights,
    FullPrecision,
    Int8Grid,
    Quantizer,
    get_quantizer,
    weight_quantizer,
)

__all__ = [
    "ALLOWED_BITS",
    "ActivationQuantizer",
    "DoReFaActivations",
    "DoReFaWeights",
    "FullPrecision",
    "Int8Grid",
    "QuantConv2D",
    "QuantDense",
    "Quantizer",
    "get_quantizer",
    "quantize_activation",
    "quantize_int8_per_channel",
    "quantize_k",
    "quantize_weight",
    "round_ste",
    "validate_bits",
    "weight_quantizer",
]
