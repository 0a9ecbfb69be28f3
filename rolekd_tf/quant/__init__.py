"""DoReFa quantisation: the math (:mod:`.dorefa`) and serialisable Keras layers (:mod:`.layers`)."""
from rolekd_tf.quant.dorefa import (
    ALLOWED_BITS,
    quantize_activation,
    quantize_k,
    quantize_weight,
    round_ste,
    validate_bits,
)
from rolekd_tf.quant.layers import ActivationQuantizer, QuantConv2D, QuantDense

__all__ = [
    "ALLOWED_BITS",
    "ActivationQuantizer",
    "QuantConv2D",
    "QuantDense",
    "quantize_activation",
    "quantize_k",
    "quantize_weight",
    "round_ste",
    "validate_bits",
]
