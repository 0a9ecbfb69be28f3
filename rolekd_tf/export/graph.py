"""Export graphs: the trainable model with preprocessing inside, and an inference-only
"export view" whose DoReFa quantisers are spelled as ops the TFLite converter lowers exactly.

Input contract of every exported model: RGB pixels in [0, 255], shape ``(N, H, W, 3)`` of the
dataset (float32; uint8 for the integer TFLite file). The graph normalises with the dataset's
mean/std, ``(x/255 − mean)/std`` (one per-channel multiply-add, :func:`preprocessing_layer`), and
returns class logits in the order of the sorted class names (``export/labels.txt``).

Export view (:func:`build_export_view`), per layer of the trained functional model:

* ``QuantConv2D`` / ``QuantDense``: the kernel is the constant ``dorefa_kernel()``. When a conv's
  only consumer is a ``BatchNormalization``, the BN is folded into it (``c_j = γ_j/√(σ²_j+ε)``):
  kernel ``K·c_j``, bias ``β_j − μ_j c_j``.
* Exact int8 weights are NOT obtained through a weight fake-quant (TF 2.21's converter
  constant-folds it and picks ``max|w|/127`` anyway, which cannot represent 1/3):
  :func:`rolekd_tf.export.passes.fix_int8_model` rewrites the flatbuffer so that every DoReFa
  kernel (``2 ≤ w_bits ≤ 7``) stores ``n·M·w_dorefa`` (``M = ⌊127/n⌋``) with per-channel scale
  ``|c_j|/(n·M)`` (from ``plan[layer]["scale"]``), and re-quantises every bias with the actual
  ``input_scale × filter_scale``.
* ``ActivationQuantizer(k < 32)``: in ``mode="float"``, ``round(n·clip(x, 0, 1))/n`` (as Keras);
  in ``mode="int8"``, ``min(max(x, −1), 1)`` into a fake-quant of range ``[0, 255/n]``: the
  producer (conv or residual add) gets a fused RELU_N1_TO_1 and an int8 output of scale exactly
  ``1/n``, zero point −128, so its int32 accumulator is requantised once, straight onto the k-bit
  grid (that *is* the k-bit round; fake-quant rounds half up, ``tf.round`` half to even: they
  differ only on exact ties) and clipped in the same op. A plain ReLU feeding only such
  quantisers is dropped (``clip(relu(x)) = clip(x)``). ``a_bits = 32`` stays a ReLU.
* ``mode="int8"``: a residual ``Add`` whose result reaches only k-bit quantisers and has one
  off-grid input puts that input on the ``1/n`` grid first (exact: ``round_n(y + q) =
  round_n(y) + q`` for ``q`` on the grid). With ``merge_projections`` an add of two BN-folded
  DoReFa convs (3×3 + 1×1 projection) becomes one conv over ``concat([mid, subsampled x])``
  (:class:`MergedConvAdd`; off by default: ~20 kB of zero taps).
* ``mode="int8"``: the first full-precision conv reads the pixels directly with the
  normalisation folded in (:func:`stem_kernel`, :class:`StemConv`: pixels + a constant 255 channel
  from one PADV2, repeated ``stem_copies`` times by one CONCATENATION; ``stem_copies`` = 0 keeps
  the in-graph normalisation instead).
* In ``mode="int8"`` the input gets ``fake_quant(min=0, max=255, 8 bits)``: scale 1, so uint8
  pixels enter the integer graph unchanged. Export option ``input="normalised"`` (tfmot's input
  contract): the file takes the model's normalised image, int8 on a grid spanning
  :func:`normalised_range` (the caller normalises and quantises); the first conv is then a plain
  conv (no folded normalisation, no constant channel), and an exact stem reads the int8 values
  ``pixels − 128`` at scale 1/64, zero point 0 (exact).
* Opt-in int8-exact model variant (:mod:`rolekd_tf.models.resnet`, config section ``int8``,
  options ``stem`` / ``shared_proj_bn``): a first conv whose kernel quantiser is an
  :class:`~rolekd_tf.quant.Int8Grid` (the model then takes ``(pixels − 128)/64``,
  :func:`model_normalisation`) becomes, in ``mode="int8"``, a plain conv on ``pixels −
  128`` (int8, zero point 0, so its zero padding is the pixel 128 as in Keras) with kernel
  ``K_int8·c_j/64`` — integers ``sign(c_j)·q`` with scale ``|c_j|·s_j/64``, exact (plan ``scale``);
  an ``Add([conv2(mid), proj(x_q)])`` followed by one BN (:func:`_shared_bn_merges`) becomes a
  :class:`MergedConvAdd` with both kernels scaled by the *same* BN factor, so ``_merged_ints`` finds
  the ratio 1 exactly (``M = P = ⌊127/n⌋``).
* Opt-in ``int8.shortcut="zero_pad"`` (:class:`~rolekd_tf.models.layers.ZeroPadShortcut`): lowered by
  the converter to STRIDED_SLICE + PAD on the entry quantiser's int8 tensor; both keep its scale
  1/n and zero point −128 (PAD fills with the zero point = level 0), so :func:`_grid_add_bits`
  (through :func:`_grid_source_bits`) counts it as on-grid and the residual add is a
  :class:`GridAdd` — exact, no weights.
* Opt-in ``int8.tail``: the last add feeds a k-bit quantiser (a GridAdd); a global average pool
  of a k-bit quantiser output becomes :class:`GridMean` (MEAN with output scale ``m/(n·H·W)``,
  exact when ``n·H·W ≤ 255``); a ``QuantDense`` with an ``Int8Grid`` stores its fake-quantised
  integers with per-channel scale ``s_j`` (plan ``kind="exact_dense"``), so only the bias
  rounding (``≤ ½·s_in·s_j``) and the int8 rounding of the logits remain.
"""
from __future__ import annotations

import os

import numpy as np

from rolekd_tf.errors import ExportError
# input normalisation lives with the models (training reads it too); re-exported for export code
from rolekd_tf.models.normalisation import (EXACT_STEM_CENTRE, EXACT_STEM_SCALE,  # noqa: F401
                                            exact_stem_normalisation, has_exact_stem, model_normalisation,
                                            normalise, normalised_range, preprocessing_layer)


def _keras():
    import keras

    return keras


def _tf():
    import tensorflow as tf

    return tf


def act_bits(layer) -> int | None:
    """k if ``layer`` is an :class:`~rolekd_tf.quant.ActivationQuantizer` whose quantiser is on a
    k-bit grid (k < 32), else None (read off the layer's quantiser object)."""
    from rolekd_tf.quant import ActivationQuantizer

    if isinstance(layer, ActivationQuantizer) and layer.quantizer.levels is not None:
        return int(layer.quantizer.bits)
    return None


def wrap_with_preprocessing(model, mean, std, *, name: str = "exported"):
    """The trainable model with the pixel normalisation in front: pixels [0,255] → logits.

    The trained model is nested unchanged (same layers and variables), so gradients reach its
    latent kernels and the file can be fine-tuned after ``keras.saving.load_model``.
    """
    keras = _keras()
    shape = tuple(int(d) for d in model.input_shape[1:])
    inputs = keras.Input(shape=shape, dtype="float32", name="pixels")
    x = preprocessing_layer(mean, std)(inputs)
    outputs = model(x)
    return keras.Model(inputs, outputs, name=name)


# --------------------------------------------------------------------------- export view
def _export_layer_classes():
    """Inference-only layers of the export view (never saved, so not registered)."""
    keras = _keras()
    tf = _tf()

    class ConstConv2D(keras.layers.Layer):
        def __init__(self, src, kernel, bias, fq_range, **kw):
            super().__init__(name=src.name, **kw)
            self.kernel_c = np.asarray(kernel, np.float32)
            self.bias_c = None if bias is None else np.asarray(bias, np.float32)
            self.fq_range = None if fq_range is None else np.asarray(fq_range, np.float32)
            self.strides = tuple(src.strides)
            self.padding = src.padding.upper()
            self.dilation = tuple(src.dilation_rate)
            self.groups = getattr(src, "groups", 1)
            self.act = src.activation
            if src.data_format != "channels_last" or self.groups != 1:
                raise ExportError(f"layer {src.name!r}: only channels_last, groups=1 convolutions can be exported")

        def call(self, x, training=None, mask=None):
            k = tf.constant(self.kernel_c)
            if self.fq_range is not None:
                r = tf.constant(self.fq_range)
                k = tf.quantization.fake_quant_with_min_max_vars_per_channel(k, -r, r, num_bits=8, narrow_range=True)
            y = tf.nn.conv2d(x, k, strides=[1, *self.strides, 1], padding=self.padding,
                             dilations=[1, *self.dilation, 1])
            if self.bias_c is not None:
                y = tf.nn.bias_add(y, tf.constant(self.bias_c))
            if self.act is not None:
                y = self.act(y)
            return y

    class ConstDense(keras.layers.Layer):
        def __init__(self, src, kernel, bias, fq_range, **kw):
            super().__init__(name=src.name, **kw)
            self.kernel_c = np.asarray(kernel, np.float32)
            self.bias_c = None if bias is None else np.asarray(bias, np.float32)
            self.fq_range = None if fq_range is None else np.asarray(fq_range, np.float32)
            self.act = src.activation

        def call(self, x, training=None, mask=None):
            k = tf.constant(self.kernel_c)
            if self.fq_range is not None:
                r = tf.constant(self.fq_range)
                k = tf.quantization.fake_quant_with_min_max_vars_per_channel(k, -r, r, num_bits=8, narrow_range=True)
            y = tf.matmul(x, k)
            if self.bias_c is not None:
                y = y + tf.constant(self.bias_c)
            if self.act is not None:
                y = self.act(y)
            return y

    class Affine(keras.layers.Layer):
        """Inference BatchNormalization as a constant per-channel multiply-add."""

        def __init__(self, src, scale, shift, **kw):
            super().__init__(name=src.name, **kw)
            self.scale_c = np.asarray(scale, np.float32)
            self.shift_c = np.asarray(shift, np.float32)

        def call(self, x, training=None, mask=None):
            return x * tf.constant(self.scale_c) + tf.constant(self.shift_c)

    class ActQ(keras.layers.Layer):
        def __init__(self, src, mode, on_grid=False, **kw):
            super().__init__(name=src.name, **kw)
            self.bits = int(src.a_bits)
            self.mode = mode
            self.on_grid = on_grid  # input already on the 1/n grid (a GridAdd through a ReLU)

        def call(self, x, training=None, mask=None):
            if self.bits == 32:
                return tf.nn.relu(x)
            n = 2**self.bits - 1
            if self.mode == "int8":
                # clip(x, 0, 1) as min(max(x, −1), 1) (fused into the producer as RELU_N1_TO_1)
                # into an int8 tensor of scale exactly 1/n and zero point −128 (real range
                # [0, 255/n]): the producer requantises its int32 accumulator straight onto the
                # k-bit grid (that *is* the k-bit round) and the clip happens in the same op.
                x = tf.minimum(tf.maximum(x, -1.0), 1.0)
                return tf.quantization.fake_quant_with_min_max_args(x, min=0.0, max=255.0 / n, num_bits=8)
            x = tf.clip_by_value(x, 0.0, 1.0)
            return tf.round(x * float(n)) / float(n)

    class GridAdd(keras.layers.Layer):
        """Residual add whose result only reaches a k-bit quantiser: the off-grid input is put on
        the 1/n grid first. Exact, because round_n(y + q) = round_n(y) + q for q on the grid."""

        def __init__(self, src, bits, on_grid=None, **kw):
            super().__init__(name=src.name, **kw)
            self.bits = int(bits)
            self.on_grid = list(on_grid or [])

        def call(self, xs, training=None, mask=None):
            n = 2**self.bits - 1
            z = min(128, 255 - n)
            ys = [x if (i < len(self.on_grid) and self.on_grid[i] and 255 % n == 0) else
                  tf.quantization.fake_quant_with_min_max_args(x, min=-z / n, max=(255 - z) / n, num_bits=8)
                  for i, x in enumerate(xs)]
            return tf.add_n(ys) if len(ys) > 2 else ys[0] + ys[1]

    class StemConv(keras.layers.Layer):
        """int8 view of a full-precision first conv fed by the pixels (see :func:`stem_kernel`):
        ``conv(concat([x, ind] × copies), kernel) + bias`` with ``ind`` a constant 255 channel.

        In the int8 file: QUANTIZE (uint8 → int8) → PADV2 (``[x, ind]``) → one CONCATENATION of
        ``copies`` inputs (none for 1) → CONV_2D. Every op reads and writes scale 1, zero point
        −128, so ``[x, ind]`` holds the pixels and 255 exactly, and any batch size works. Other
        ways to write ``ind`` (LiteRT 2.3, XNNPACK, 1 thread, 32×32, measured): a 1×1 CONV_2D
        (zero weights, bias 255) costs ≈ 17 µs whatever its output channels (that is also what
        writing ``[x, ind] × copies`` in one 1×1 conv costs); PADV2 ≈ 5–6 µs (run by LiteRT before
        the delegate, which still takes the rest of the graph as one partition); a constant
        ``[1, H, W, 1]`` tensor fixes the batch at 1 (CONCATENATION does not broadcast)."""

        def __init__(self, src, kernel, bias, copies, **kw):
            super().__init__(name=src.name, **kw)
            self.kernel_c = np.asarray(kernel, np.float32)
            self.bias_c = np.asarray(bias, np.float32)
            self.copies = int(copies)
            self.strides = tuple(src.strides)
            self.padding = src.padding.upper()
            self.dilation = tuple(src.dilation_rate)
            self.act = src.activation

        def call(self, x, training=None, mask=None):
            # the indicator: the pixels padded on the channel axis with a constant 255 (PADV2, the
            # int8 255 = 127 of the input's scale 1 / zero point −128, exact); the conv's own SAME
            # padding then zero-pads it like the image, so its weights add the normalisation offset
            # exactly where the kernel overlaps the image
            xa = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 1]], constant_values=255.0)
            xk = tf.concat([xa] * self.copies, -1) if self.copies > 1 else xa
            y = tf.nn.conv2d(xk, tf.constant(self.kernel_c), strides=[1, *self.strides, 1], padding=self.padding,
                             dilations=[1, *self.dilation, 1])
            y = tf.nn.bias_add(y, tf.constant(self.bias_c))
            if self.act is not None:
                y = self.act(y)
            return y

    class Subsample(keras.layers.Layer):
        """int8 view of a merged 1×1 projection: its input subsampled by a 1×1 identity conv with
        the projection's stride, kept on the 1/n grid (exact: integer weights 1, no rounding)."""

        def __init__(self, src, n, **kw):
            super().__init__(name=src.name, **kw)
            self.strides = tuple(src.strides)
            self.padding = src.padding.upper()
            self.n = int(n)

        def call(self, x, training=None, mask=None):
            c = int(x.shape[-1])
            eye = tf.constant(np.eye(c, dtype=np.float32).reshape(1, 1, c, c))
            y = tf.nn.conv2d(x, eye, strides=[1, *self.strides, 1], padding=self.padding)
            return tf.quantization.fake_quant_with_min_max_args(y, min=0.0, max=255.0 / self.n, num_bits=8)

    class MergedConvAdd(keras.layers.Layer):
        """int8 view of ``Add([bn2(conv2(mid)), bn_p(proj(x))])``: one conv over ``concat([mid,
        subsampled x])`` whose kernel holds conv2's taps and the projection at the centre tap, so
        the sum is formed in one int32 accumulator and rounded once (the quantiser after it)."""

        def __init__(self, src, kernel, bias, main_first, **kw):
            super().__init__(name=src.name, **kw)
            self.kernel_c = np.asarray(kernel, np.float32)
            self.bias_c = np.asarray(bias, np.float32)
            self.main_first = bool(main_first)

        def call(self, xs, training=None, mask=None):
            a, b = (xs[0], xs[1]) if self.main_first else (xs[1], xs[0])
            y = tf.nn.conv2d(tf.concat([a, b], -1), tf.constant(self.kernel_c), strides=1, padding="SAME")
            return tf.nn.bias_add(y, tf.constant(self.bias_c))

    class GridMean(keras.layers.Layer):
        """int8 view of a global average pool over a k-bit quantiser output (the ``exact_tail``
        variant): the mean of H·W values on the 1/n grid is a multiple of 1/(n·H·W); its int8
        output gets the scale ``m/(n·H·W)`` (``m = ⌈n·H·W/255⌉``), zero point −128, so for
        ``n·H·W ≤ 255`` (2 bits, 8×8: 192) every mean is stored exactly (input scale/output
        scale/(H·W) = 1: the MEAN op only sums)."""

        def __init__(self, src, n, hw, **kw):
            super().__init__(name=src.name, **kw)
            self.n, self.hw = int(n), int(hw)
            self.step = float(-(-self.n * self.hw // 255)) / (self.n * self.hw)

        def call(self, x, training=None, mask=None):
            y = tf.reduce_mean(x, axis=[1, 2])
            return tf.quantization.fake_quant_with_min_max_args(y, min=0.0, max=255.0 * self.step, num_bits=8)

    class Passthrough(keras.layers.Layer):
        def __init__(self, src, **kw):
            super().__init__(name=src.name, **kw)

        def call(self, x, training=None, mask=None):
            return x

    class InputFakeQuant(keras.layers.Layer):
        """The file's int8/uint8 input grid: ``[lo, hi]`` in 255 steps (pixels: ``[0, 255]``,
        scale 1; normalised images: :func:`~rolekd_tf.models.normalisation.normalised_range`)."""

        def __init__(self, lo: float = 0.0, hi: float = 255.0, **kw):
            super().__init__(**kw)
            self.lo, self.hi = float(lo), float(hi)

        def call(self, x, training=None, mask=None):
            return tf.quantization.fake_quant_with_min_max_args(x, min=self.lo, max=self.hi, num_bits=8)

    class CentrePixels(keras.layers.Layer):
        """``pixels − 128`` as int8 with scale 1 and zero point 0 (the SUB only relabels the zero
        point: the int8 values are unchanged), so an exact-stem conv pads with pixel value 128."""

        def call(self, x, training=None, mask=None):
            y = x - float(EXACT_STEM_CENTRE)
            return tf.quantization.fake_quant_with_min_max_args(y, min=-128.0, max=127.0, num_bits=8)

    return (ConstConv2D, ConstDense, Affine, ActQ, Passthrough, InputFakeQuant, GridAdd, StemConv, Subsample,
            MergedConvAdd, GridMean, CentrePixels)


def _producer(layer):
    """The layer whose output feeds ``layer`` (single-input layers only), else None."""
    try:
        t = layer.input
        if isinstance(t, (list, tuple)):
            return None
        return t._keras_history.operation
    except Exception:
        return None


def _consumer_count(layer) -> int:
    try:
        return len(layer._outbound_nodes)
    except Exception:
        return 99


def _consumers(layer) -> list:
    try:
        return [n.operation for n in layer._outbound_nodes]
    except Exception:
        return [None]


def _grid_add_bits(layer) -> int | None:
    """k if ``layer`` is an Add whose output reaches only k-bit ActivationQuantizers (through ReLU /
    Identity layers) and all but at most one of its inputs come straight from such a quantiser."""
    keras = _keras()
    if not isinstance(layer, keras.layers.Add):
        return None
    k = _add_out_bits(layer)
    if k is None:
        return None
    try:
        producers = [t._keras_history.operation for t in layer.input]
    except Exception:
        return None
    off_grid = [p for p in producers if _grid_source_bits(p) != k]
    return k if len(off_grid) <= 1 else None


def _grid_source_bits(op) -> int | None:
    """k if ``op``'s output is on a k-bit grid: a k-bit (k < 32) ActivationQuantizer, possibly
    through :class:`~rolekd_tf.models.layers.ZeroPadShortcut` layers (subsample + zero channels:
    values are copied or 0, so they stay on the grid)."""
    from rolekd_tf.models.layers import ZeroPadShortcut

    seen = 0
    while isinstance(op, ZeroPadShortcut) and seen < 16:
        seen += 1
        op = _producer(op)
    return act_bits(op)


def _add_out_bits(layer):
    """k if every consumer path of ``layer`` (through ReLU/Identity) ends in a k-bit quantiser."""
    keras = _keras()
    from rolekd_tf.quant import ActivationQuantizer

    bits, frontier, seen = set(), [layer], 0
    while frontier and seen < 64:
        seen += 1
        cons = _consumers(frontier.pop())
        if not cons:
            return None  # a model output
        for c in cons:
            if isinstance(c, ActivationQuantizer):
                bits.add(act_bits(c))
            elif isinstance(c, (keras.layers.ReLU, keras.layers.Identity)):
                frontier.append(c)
            else:
                return None
    if len(bits) != 1 or None in bits:
        return None
    return bits.pop()


def _main_and_projection(convs):
    """``(m, p)`` indices into the two convs of a residual add: ``m`` a stride-1 'same' odd square
    kernel (conv2), ``p`` a 1×1 (the projection); None if the pair is not of that shape."""
    ks = [tuple(c.kernel_size) for c in convs]
    main = [i for i in (0, 1) if ks[i][0] % 2 == 1 and ks[i][0] == ks[i][1] and tuple(convs[i].strides) == (1, 1)
            and convs[i].padding == "same" and tuple(convs[i].dilation_rate) == (1, 1)]
    proj = [i for i in (0, 1) if ks[i] == (1, 1)]
    return next(((m, p) for m in main for p in proj if m != p), None)


def _projection_merges(model, fold) -> dict:
    """Residual adds ``Add([bn2(conv2(q1)), bn_p(proj(q0))])`` feeding only k-bit quantisers, with
    conv2 a stride-1 'same' odd-sized DoReFa conv, proj a 1×1 DoReFa conv, both BN-folded and both
    reading k'-bit quantiser outputs: add name → dict(main=conv2, proj=proj conv, n_in, main_first)."""
    keras = _keras()
    bn_of = {bn.name: conv for conv, bn in ((model.get_layer(c), b) for c, b in fold.items())}
    out = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Add) or _add_out_bits(layer) is None:
            continue
        try:
            prods = [t._keras_history.operation for t in layer.input]
        except Exception:
            continue
        if len(prods) != 2 or any(p.name not in bn_of for p in prods):
            continue
        entry = _merge_entry([bn_of[p.name] for p in prods])
        if entry is not None:
            out[layer.name] = entry
    return out


def _merge_entry(convs) -> dict | None:
    """dict(main, proj, n_in, main_first) if the two ``convs`` of a residual add are a mergeable
    DoReFa conv2 + 1×1 projection pair (both reading same-width k-bit quantiser outputs, 2..7-bit
    weights), else None."""
    from rolekd_tf.quant import DoReFaWeights

    in_bits = {act_bits(_producer(c)) for c in convs}
    if len(in_bits) != 1 or None in in_bits:
        return None
    if not all(isinstance(q, DoReFaWeights) and 2 <= q.bits and q.steps <= 127
               for q in (getattr(c, "kernel_quantizer", None) for c in convs)):
        return None
    pick = _main_and_projection(convs)
    if pick is None:
        return None
    m, p = pick
    return {"main": convs[m].name, "proj": convs[p].name, "n_in": 2 ** in_bits.pop() - 1, "main_first": m == 0}


def _shared_bn_merges(model) -> dict:
    """Residual adds ``BN(Add([conv2(q1), proj(q0)]))`` (one BN after the add, the
    ``shared_proj_bn`` variant) whose BN output reaches only k-bit quantisers, with conv2 a stride-1
    'same' odd-sized DoReFa conv and proj a 1×1 DoReFa conv, each the add's sole input from it and
    reading k'-bit quantiser outputs: add name → dict(main, proj, n_in, main_first, bn)."""
    keras = _keras()
    from rolekd_tf.quant.layers import QuantConv2D

    out = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Add):
            continue
        cons = _consumers(layer)
        if len(cons) != 1 or not isinstance(cons[0], keras.layers.BatchNormalization):
            continue
        bn = cons[0]
        if bn.axis not in (-1, 3, [3], [-1]) or _add_out_bits(bn) is None:
            continue
        try:
            convs = [t._keras_history.operation for t in layer.input]
        except Exception:
            continue
        if len(convs) != 2 or not all(isinstance(c, QuantConv2D) and _consumer_count(c) == 1 and c.bias is None
                                      and c.activation in (None, keras.activations.linear) for c in convs):
            continue
        if len({c.kernel_quantizer for c in convs}) != 1:  # one shared BN factor: same weight grid
            continue
        entry = _merge_entry(convs)
        if entry is not None:
            out[layer.name] = {**entry, "bn": bn.name}
    return out


def _gap_grid_bits(layer) -> int | None:
    """k if ``layer`` is a channels_last GlobalAveragePooling2D (no keepdims) of a k-bit quantiser
    output (through Identity layers, e.g. a KD tap): the ``exact_tail`` variant."""
    keras = _keras()
    if not isinstance(layer, keras.layers.GlobalAveragePooling2D) or layer.data_format != "channels_last" \
            or getattr(layer, "keepdims", False):
        return None
    p = _producer(layer)
    while isinstance(p, keras.layers.Identity):
        p = _producer(p)
    return _grid_source_bits(p)


def _relu_before_quantizers(layer) -> bool:
    """A plain ReLU whose every consumer is a k-bit (k < 32) ActivationQuantizer."""
    cfg = layer.get_config()
    if cfg.get("max_value") is not None or float(cfg.get("negative_slope") or 0) != 0 or float(cfg.get("threshold") or 0) != 0:
        return False
    keras = _keras()
    cons, frontier, seen = [], [layer], 0
    while frontier and seen < 16:
        seen += 1
        for c in _consumers(frontier.pop()):
            (frontier if isinstance(c, keras.layers.Identity) else cons).append(c)
    return bool(cons) and all(act_bits(c) is not None for c in cons)


def _bn_affine(bn):
    gamma = np.asarray(bn.gamma.numpy()) if bn.scale else np.ones(bn.moving_mean.shape, np.float32)
    beta = np.asarray(bn.beta.numpy()) if bn.center else np.zeros(bn.moving_mean.shape, np.float32)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    c = gamma.astype(np.float64) / np.sqrt(var + bn.epsilon)
    return c, beta.astype(np.float64) - mean * c


def _entry(entry, key):
    """``key`` of a plan entry (a dict, or an object with that attribute)."""
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def int8_exactness(model, plan: dict, fixes: list | None = None, *, exact_pool: bool = False,
                   normalised_input: bool = False) -> dict:
    """Which parts of the int8 export view (``plan`` of :func:`build_export_view`, ``mode="int8"``)
    round differently from Keras, and the ``int8`` config options
    (:class:`~rolekd_tf.config.Int8Exactness`) that make them exact. Layer kinds are read off the
    model's quantiser objects; what the exporter made of each layer, off ``plan``.

    ``fixes``: the records of :func:`~rolekd_tf.export.passes.fix_int8_model` for that view; with
    them the integer-bias fit is read off the file (channels where no integer bias keeps every
    threshold, ``bias_unfit_channels``) instead of predicted from the layer types. ``exact_pool``:
    the file's global pool is exact at any bit width (the logits pass's
    :class:`~rolekd_tf.export.passes.logits.ExactPool`: int8 window sums added up by the logits layer).
    ``normalised_input``: the file takes the normalised image on an int8 grid (export option
    ``input="normalised"``), so a full-precision first conv reads a rounded input.

    Returns ``{"exact_body": bool, "inexact": [{"part", "layers", "why", "fix"}...], "always": str}``.
    ``exact_body`` means every k-bit quantiser and the tail accumulators reproduce Keras given
    exact arithmetic (only the final int8 rounding of the logits, and float32 ties in Keras, remain).
    """
    keras = _keras()

    from rolekd_tf.quant import FullPrecision

    def kind(name):
        return _entry(plan.get(name), "kind")

    always = "the logits are rounded to int8 once (images whose top-2 logit gap is below that step can flip)"
    quantised = [l for l in model.layers if act_bits(l) is not None]
    if not quantised:
        return {"exact_body": False, "always": always,
                "inexact": [{"part": "activations", "layers": [], "fix": None,
                             "why": "full-precision activations: the int8 file is post-training quantised"}]}
    inexact = []
    stems = [k for k in plan if kind(k) == "stem"]
    if stems:
        inexact.append({"part": "stem", "layers": stems, "fix": "int8.stem=true",
                        "why": "full-precision first conv: its int8 filter rounds the float kernel"})
    elif normalised_input and not has_exact_stem(model):
        from rolekd_tf.models.normalisation import stem_convs

        inexact.append({"part": "stem", "layers": [l.name for l in stem_convs(model)], "fix": "int8.stem=true",
                        "why": "full-precision first conv: it reads the normalised image rounded to the "
                               "file's int8 input grid, and its int8 filter rounds the float kernel"})
    adds = [l.name for l in model.layers if isinstance(l, keras.layers.Add)
            and kind(l.name) not in ("grid_add", "merged_conv")]
    proj = [a for a in adds if _add_out_bits(model.get_layer(a)) is not None]
    if proj:
        inexact.append({"part": "projection adds", "layers": proj,
                        "fix": "int8.shortcut=zero_pad or int8.shared_proj_bn=true",
                        "why": "two BN-scaled branches are each rounded to int8 before the add"})
    tail = [a for a in adds if a not in proj]
    if not any(kind(k) == "grid_mean" for k in plan):
        tail += [l.name for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D)]
    if not any(kind(k) == "exact_dense" for k in plan):
        tail += [k for k in plan if kind(k) == "dense" and isinstance(getattr(model.get_layer(k), "kernel_quantizer", FullPrecision()), FullPrecision)]
    if tail:
        inexact.append({"part": "tail", "layers": tail, "fix": "int8.tail=true",
                        "why": "full-precision block output, pooling and logits on calibrated int8 scales"})
    coarse_pool = [k for k in plan if kind(k) == "grid_mean" and not _entry(plan[k], "exact")]
    if coarse_pool and not exact_pool:
        inexact.append({"part": "pool rounding", "layers": coarse_pool, "fix": "int16 logits (the default)",
                        "why": "the mean of n·H·W > 255 level steps is rounded to an int8 scale"})
    from rolekd_tf.export.passes.grids import FINE_GRID_MIN_LEVELS

    # ≥ 3-bit quantisers feeding convs are re-stored on a finer grid (tflite.refine_quantiser_grids),
    # which gives the integer biases room; not the exact stem: it reads pixels (integer weights of
    # gcd 1, every accumulator value reachable), so its first quantiser keeps a bias lattice
    fine = [l.name for l in quantised if act_bits(l) >= 3 and l.quantizer.steps < FINE_GRID_MIN_LEVELS]
    if fine:
        inexact.append({"part": "integer bias lattice", "layers": fine, "fix": None,
                        "why": "one integer bias per channel cannot always place all 2^k − 1 thresholds of a "
                               "≥ 3-bit quantiser"})
    stem = next((k for k in plan if kind(k) == "exact_stem"), None)
    recs = {r.get("layer"): r for r in (fixes or []) if r.get("layer")}
    if stem is not None and act_bits(quantised[0]) >= 3:
        step = model.get_layer(stem).kernel_quantizer.step  # an Int8Grid: the exact stem
        hint = "; a coarser stem grid (int8.stem_step=12) leaves it room" if step == 1 else ""
        rec = recs.get(stem)
        if rec is None or "bias_unfit_channels" not in rec:
            inexact.append({"part": "stem bias lattice", "layers": [quantised[0].name], "fix": None,
                            "why": f"the exact stem's integer weights (multiples of {step}) leave one integer bias "
                                   f"per channel little room to keep all 2^k − 1 thresholds of a ≥ 3-bit quantiser{hint}"})
        elif rec["bias_unfit_channels"]:
            inexact.append({"part": "stem bias lattice", "layers": [quantised[0].name], "fix": None,
                            "channels": [int(rec["bias_unfit_channels"]), int(rec["bias_channels"])],
                            "why": f"{rec['bias_unfit_channels']} of {rec['bias_channels']} channels of the exact stem "
                                   f"(integer weights: multiples of {step}) have no integer bias that keeps all "
                                   f"2^k − 1 thresholds of the ≥ 3-bit quantiser; values near those thresholds move{hint}"})
    body = sorted(k for k, r in recs.items() if k != stem and r.get("bias_unfit_channels"))
    if body:
        inexact.append({"part": "integer bias fit", "layers": body, "fix": None,
                        "channels": {k: [int(recs[k]["bias_unfit_channels"]), int(recs[k]["bias_channels"])] for k in body},
                        "why": "in these convs some channels have no integer bias that keeps every threshold"})
    return {"exact_body": not inexact, "inexact": inexact, "always": always}


def stem_kernel(kernel, bias, mean, std, copies: int):
    """Fold ``(x/255 − mean)/std`` into a first conv that reads pixels ``x`` (HWIO ``kernel``,
    BN already folded). Returns ``(kernel_all, tiled, bias)``:

    * ``kernel_all`` (kh, kw, 4, cout): the 3 pixel channels scaled by ``1/(255·std_c)`` plus a
      4th "indicator" channel of weights ``Σ_c K_c·(−mean_c/std_c)/255``, fed a constant 255 that
      is zero-padded like the image (:class:`StemConv`: the pixels padded with 255 on the channel
      axis) — so the offset term is added exactly where the kernel overlaps the image, as in the
      normalised model (whose zero padding is the mean colour);
    * ``tiled`` = ``kernel_all/copies`` repeated ``copies`` times on the input axis (the float
      graph: the input is repeated as often, so the value is unchanged; the int8 rewrite splits the
      integer filter ``Q`` into ``copies`` int8 parts summing to ``Q``, i.e. ``copies``× finer);
    * ``bias`` unchanged.
    """
    k = np.asarray(kernel, np.float64)
    mean = np.asarray(mean, np.float64).reshape(-1)
    std = np.asarray(std, np.float64).reshape(-1)
    a = 1.0 / (255.0 * std)
    o = -mean / std
    kp = k * a[None, None, :, None]
    ki = np.einsum("hwcj,c->hwj", k, o)[:, :, None, :] / 255.0
    kall = np.concatenate([kp, ki], 2)
    tiled = np.concatenate([kall / copies] * copies, 2)
    return kall, tiled, bias


def _stem_layer(model):
    """The first conv if it alone reads the model input (channels_last, groups 1, 3 channels) and its
    kernel quantiser is not a DoReFa grid (full precision, or the exact stem's ``Int8Grid``), else
    None."""
    keras = _keras()
    from rolekd_tf.quant import DoReFaWeights

    try:
        inp_layer = model.inputs[0]._keras_history.operation
        cons = _consumers(inp_layer)
    except Exception:
        return None
    if len(cons) != 1 or not isinstance(cons[0], keras.layers.Conv2D):
        return None
    c = cons[0]
    if isinstance(getattr(c, "kernel_quantizer", None), DoReFaWeights) or c.data_format != "channels_last" \
            or getattr(c, "groups", 1) != 1:
        return None
    if int(c.input.shape[-1]) != 3:
        return None
    return c


#: input repetitions of the int8 first conv: its integer filter gets ``STEM_COPIES``× the
#: resolution of one int8 filter. Cost (XNNPACK, measured 2026-12-03): one CONCATENATION, ≈ 5–7 µs
#: at 32×32 (the 3×3 conv itself costs the same for 3, 4 or 8 input channels). 1 instead of 2
#: saves that op but 2.2× / 5.4× more first-quantiser levels differ from Keras (digits w2a2 /
#: w4a4, 297 images); 3 / 4 add ≈ 4 / 6 µs for 1.5× / 1.9× (w2a2) and 1.0× / 1.6× (w4a4) fewer.
STEM_COPIES = 2
#: full-precision layers get per-channel int8 weight scales when max/min of the per-channel
#: max|w| exceeds this (per-tensor would then lose more than one bit on some channel)
FP_PER_CHANNEL_SPREAD = 2.0

def build_export_view(model, mean, std, *, mode: str = "float", stem_copies: int | None = None,
                      merge_projections: bool = False, input: str = "pixels"):
    """Inference-only functional model ``pixels → logits`` (``input="normalised"``: normalised
    image → logits) for the TFLite converter (see module doc).

    ``model`` is the trained (functional) model taking normalised images; ``mean``/``std`` the
    dataset's (x/255 units). Options as :class:`rolekd_tf.export.view.ViewOptions`. Returns
    ``(view, plan)``; ``plan`` (:data:`rolekd_tf.export.plan.Plan`) maps layer name → a typed
    record (kind, bit width, exact int8 scale, folded BN, ...) read by the flatbuffer passes, the
    report and the exactness check. Built by :mod:`rolekd_tf.export.view`.
    """
    from rolekd_tf.export.view import ViewOptions, build_view

    opts = ViewOptions(mode=mode, merge_projections=merge_projections, input=input,
                       **({} if stem_copies is None else {"stem_copies": int(stem_copies)}))
    return build_view(model, mean, std, opts)
