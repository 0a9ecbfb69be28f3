"""The export view: the trained functional model cloned layer by layer into inference-only layers
the TFLite converter lowers exactly (rules: :mod:`rolekd_tf.export.graph` module doc), plus the
:data:`~rolekd_tf.export.plan.Plan` the flatbuffer passes read.

:func:`build_view` is reached through :func:`rolekd_tf.export.graph.build_export_view`. The
analysis of the model (BN folding, merges, stems) is done once by :class:`_Analysis`; each layer
is then cloned by one small rule of :class:`_ViewBuilder`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rolekd_tf.errors import ExportError
from rolekd_tf.quant.quantizers import Int8Grid
from rolekd_tf.export import graph as G
from rolekd_tf.export.plan import (ActPlan, GridAddPlan, GridMeanPlan, MergedConvPlan, Plan,
                                   WeightPlan)

MODES = ("float", "int8")
#: what the exported file takes: uint8 pixels (normalisation inside the file) or the model's
#: normalised image (int8 in the int8 file; the caller normalises and quantises, as for tfmot's files)
INPUTS = ("pixels", "normalised")


def check_input(value: str) -> None:
    """Raise :class:`~rolekd_tf.errors.ExportError` unless ``value`` is one of :data:`INPUTS`."""
    if value not in INPUTS:
        raise ExportError(f"int8 input {value!r}; allowed: {', '.join(INPUTS)}")
_BN_AXES = (-1, 3, [3], [-1])


@dataclass(frozen=True)
class ViewOptions:
    """Export view options (documented defaults; ``python -m rolekd_tf.export`` uses them).

    ``mode``: ``float`` (fp32 file) or ``int8`` (full-integer file). ``stem_copies``: input
    repetitions of the int8 first conv with the normalisation folded in (0: in-graph
    normalisation instead; default :data:`~rolekd_tf.export.graph.STEM_COPIES`).
    ``merge_projections``: fold each BN-folded conv2 + 1×1 projection add into one conv (off by
    default: ~20 kB of zero taps for the two rounding steps it saves). ``input``: one of
    :data:`INPUTS` (``normalised``: no normalisation in the graph, ``stem_copies`` unused)."""
    mode: str = "float"
    stem_copies: int = G.STEM_COPIES
    merge_projections: bool = False
    input: str = "pixels"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ExportError(f"export view mode={self.mode!r}; allowed: {', '.join(MODES)}")
        if int(self.stem_copies) < 0:
            raise ExportError(f"stem_copies={self.stem_copies}; allowed: 0 or more")
        check_input(self.input)

    @property
    def int8(self) -> bool:
        return self.mode == "int8"


def _keras():
    import keras

    return keras


@dataclass
class _Analysis:
    """What the cloning rules need to know about the whole model (computed once)."""
    fold: dict = field(default_factory=dict)          # conv name -> the BN folded into it
    merges: dict = field(default_factory=dict)        # add name -> merge entry (main, proj, n_in, ...)
    shared_bns: dict = field(default_factory=dict)    # BN name -> BN layer after a merged add
    shared_c: dict = field(default_factory=dict)      # conv name -> the shared BN's factor
    exact_stem: object = None                         # the int8-exact first conv (int8 mode)
    stem: object = None                               # the FP first conv fed the pixels (int8 mode)

    @classmethod
    def of(cls, model, opts: ViewOptions) -> "_Analysis":
        a = cls(fold=_bn_folds(model))
        if opts.int8:
            first = G._stem_layer(model)
            if G.has_exact_stem(model):
                a.exact_stem = first
            elif opts.stem_copies > 0 and opts.input == "pixels":
                a.stem = first
            if opts.merge_projections:
                a.merges.update(G._projection_merges(model, a.fold))
            shared = G._shared_bn_merges(model)
            a.merges.update(shared)
            for v in shared.values():
                bn = model.get_layer(v["bn"])
                a.shared_bns[v["bn"]] = bn
                a.shared_c[v["main"]] = a.shared_c[v["proj"]] = G._bn_affine(bn)[0]
        return a

    def merged_as(self, layer_name: str):
        """``(add name, "main"|"proj")`` if the conv is part of a merge, else None."""
        for add, v in self.merges.items():
            for role in ("main", "proj"):
                if v[role] == layer_name:
                    return add, role
        return None


def _bn_folds(model) -> dict:
    """conv name → BN, for every BatchNormalization whose producer is a linear conv read by it alone."""
    keras = _keras()
    fold = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            p = G._producer(layer)
            if isinstance(p, keras.layers.Conv2D) and p.activation in (None, keras.activations.linear) \
                    and G._consumer_count(p) == 1 and layer.axis in _BN_AXES:
                fold[p.name] = layer
    return fold


def _int8_grid(wb: int, c: np.ndarray):
    """``(scale, int_step)`` of the exact int8 filter of a ``wb``-bit DoReFa kernel times BN factor
    ``c`` (None, None when no int8 grid holds it), binary kernels handled by the caller."""
    n = 2**wb - 1
    if n > 127:  # 8-bit DoReFa weights need 9 bits (odd ints −255…255): not exact in int8
        return None, None
    # q = n·M·w_dorefa with M = floor(127/n): odd multiples of M, |q| ≤ 127. The extra factor M
    # (42 at 2 bits) makes the int32 accumulator unit — and so the bias resolution — M× finer.
    m = 127 // n
    return np.abs(c) / (n * m), m


def _per_channel_max(k: np.ndarray) -> np.ndarray:
    return np.max(np.abs(k.reshape(-1, k.shape[-1])), axis=0)


def _feeds_only_quantizers(cons) -> bool:
    from rolekd_tf.quant.layers import ActivationQuantizer

    return all(isinstance(c, ActivationQuantizer) and int(c.a_bits) < 32 for c in cons)


class _ViewBuilder:
    """``clone(layer)`` → the view's layer for it; fills :attr:`plan` on the way."""

    def __init__(self, model, mean, std, opts: ViewOptions):
        self.model, self.mean, self.std, self.opts = model, mean, std, opts
        self.a = _Analysis.of(model, opts)
        self.plan: Plan = {}
        self.L = dict(zip(("ConstConv2D", "ConstDense", "Affine", "ActQ", "Passthrough", "InputFakeQuant",
                           "GridAdd", "StemConv", "Subsample", "MergedConvAdd", "GridMean", "CentrePixels"),
                          G._export_layer_classes()))

    # ------------------------------------------------------------------ dispatch
    def clone(self, layer):
        keras = _keras()
        from rolekd_tf.quant.layers import ActivationQuantizer, QuantConv2D, QuantDense

        int8 = self.opts.int8
        if isinstance(layer, (QuantConv2D, QuantDense)) or type(layer) in (keras.layers.Conv2D, keras.layers.Dense):
            return self._weights(layer)
        if isinstance(layer, keras.layers.BatchNormalization):
            return self._batchnorm(layer)
        if layer.name in self.a.merges:
            return self._merged_add(layer)
        if int8 and isinstance(layer, keras.layers.Add) and G._grid_add_bits(layer) is not None:
            return self._grid_add(layer)
        if int8 and isinstance(layer, keras.layers.GlobalAveragePooling2D) and G._gap_grid_bits(layer) is not None:
            return self._grid_mean(layer)
        if isinstance(layer, ActivationQuantizer):
            return self._activation(layer)
        if int8 and isinstance(layer, keras.layers.ReLU) and G._relu_before_quantizers(layer):
            # clip(relu(x), 0, 1) = clip(x, 0, 1): without it the producer's fused RELU would get a
            # calibrated scale and the quantiser a second (inexact) rounding
            return self.L["Passthrough"](layer)
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if isinstance(layer, keras.Model):
            raise ExportError(f"layer {layer.name!r} is a nested model; export the flat functional model")
        return _fresh_copy(layer)

    # ------------------------------------------------------------------ rules
    def _weights(self, layer):
        keras = _keras()
        wb = int(getattr(layer, "w_bits", 32))
        k = np.asarray(layer.dorefa_kernel().numpy() if hasattr(layer, "dorefa_kernel") else layer.kernel.numpy(), np.float64)
        b = None if layer.bias is None else np.asarray(layer.bias.numpy(), np.float64)
        cout = k.shape[-1]
        c = np.ones(cout)
        bn = self.a.fold.get(layer.name)
        if bn is not None:
            c, shift = G._bn_affine(bn)
            b = shift + (c * b if b is not None else 0.0)
            k = k * c
        elif layer.name in self.a.shared_c:  # merged under a shared BN: its factor, its shift on the add
            c = self.a.shared_c[layer.name]
            k = k * c
        scale, int_step = None, None
        if wb == 1:
            e = float(np.max(np.abs(np.asarray(layer.dorefa_kernel().numpy()))))
            scale, int_step = e * np.abs(c) / 127.0, 127
        elif wb < 32:
            scale, int_step = _int8_grid(wb, c)
        cons = G._consumers(bn if bn is not None else layer)
        grid_out = self.opts.int8 and bool(cons) and (
            _feeds_only_quantizers(cons) or (len(cons) == 1 and G._grid_add_bits(cons[0]) is not None))
        # full-precision kernels: per-channel int8 scales only where one per-tensor scale would
        # cost some channel more than 1 bit (largest/smallest channel max|w| > 2)
        cmax = _per_channel_max(k)
        spread = float(np.max(cmax) / max(float(np.min(cmax)), 1e-30))
        p = dict(kind="conv" if isinstance(layer, keras.layers.Conv2D) else "dense", grid_out=grid_out,
                 fp_per_channel=wb == 32 and spread > G.FP_PER_CHANNEL_SPREAD, channel_spread=spread,
                 w_bits=wb, folded_bn=bn.name if bn is not None else None, scale=scale,
                 n=0 if wb == 32 else (1 if wb == 1 else 2**wb - 1), int_step=int_step, sign=np.sign(c),
                 kernel=k.astype(np.float32), bias=None if b is None else np.asarray(b, np.float32))
        if layer is self.a.exact_stem:
            return self._exact_stem(layer, p, k, b, c, cons)
        if self.opts.int8 and isinstance(getattr(layer, "kernel_quantizer", None), Int8Grid) \
                and isinstance(layer, keras.layers.Dense) \
                and bn is None:
            # int8-grid dense (exact_tail logits): K = s_j·q, q integer |q| ≤ 127 per output
            # channel, stored exactly with scale s_j
            s_j = np.maximum(_per_channel_max(np.asarray(layer.dorefa_kernel().numpy(), np.float64)), 1e-30) / 127.0
            p.update(kind="exact_dense", scale=s_j, int_step=1, fp_per_channel=False)
        if layer is self.a.stem:
            return self._stem(layer, p, k, b)
        merged = self.a.merged_as(layer.name)
        if merged is not None:
            add, role = merged
            self.plan[layer.name] = WeightPlan(**p, merged_into=add, c=np.asarray(c),
                                               dorefa=np.asarray(layer.dorefa_kernel().numpy(), np.float32))
            if role == "main":
                return self.L["Passthrough"](layer)
            return self.L["Subsample"](layer, self.a.merges[add]["n_in"])
        self.plan[layer.name] = WeightPlan(**p)
        # No weight fake-quant in the graph: the converter constant-folds it and picks its own
        # max|w|/127 scale anyway; the exact-grid pass (passes.grids) writes the exact integers.
        cls = self.L["ConstConv2D"] if isinstance(layer, keras.layers.Conv2D) else self.L["ConstDense"]
        return cls(layer, k, b, None)

    def _exact_stem(self, layer, p: dict, k, b, c, cons):
        """int8-exact stem: K = s_j·q (q integer, |q| ≤ L = ⌊127/step⌋) per output channel; its
        input (pixels − 128)/64 arrives as the int8 values pixels − 128 (CentrePixels: scale 1, so
        the 1/64 is folded into the kernel; ``input="normalised"``: scale 1/64 already): integers
        sign(c_j)·step·q with scale |c_j|·s_j/(64·step), resp. |c_j|·s_j/step (exact; step ≥ 2
        gives the integer bias room, passes.bias)."""
        keras = _keras()
        from rolekd_tf.quant.layers import ActivationQuantizer

        kq_obj = layer.kernel_quantizer
        step = kq_obj.step if isinstance(kq_obj, Int8Grid) else 1
        kq = np.asarray(layer.dorefa_kernel().numpy(), np.float64)
        s_j = np.maximum(_per_channel_max(kq), 1e-30) / (127 // step) / step
        b = np.zeros(k.shape[-1]) if b is None else b
        folded = float(G.EXACT_STEM_SCALE) if self.opts.input == "pixels" else 1.0
        kc = k / folded
        grid_out = bool(cons) and all((isinstance(q, ActivationQuantizer) and int(q.a_bits) < 32)
                                      or (isinstance(q, keras.layers.ReLU) and G._relu_before_quantizers(q))
                                      for q in cons)
        p.update(kind="exact_stem", kernel=kc.astype(np.float32), scale=np.abs(c) * s_j / folded,
                 int_step=step, bias=np.asarray(b, np.float32), grid_out=grid_out)
        self.plan[layer.name] = WeightPlan(**p)
        return self.L["ConstConv2D"](layer, kc, b, None)

    def _stem(self, layer, p: dict, k, b):
        """FP first conv reading the pixels with the normalisation folded in (:func:`graph.stem_kernel`;
        in the file: PADV2 writes the 255 channel, one CONCATENATION the copies, :class:`StemConv`)."""
        copies = int(self.opts.stem_copies)
        kall, tiled, b = G.stem_kernel(k, np.zeros(k.shape[-1]) if b is None else b, self.mean, self.std, copies)
        p.update(kind="stem", kernel=tiled.astype(np.float32), bias=np.asarray(b, np.float32))
        self.plan[layer.name] = WeightPlan(**p, kernel_all=kall, copies=copies)
        return self.L["StemConv"](layer, tiled, b, copies)

    def _batchnorm(self, layer):
        if layer.name in {bn.name for bn in self.a.fold.values()} or layer.name in self.a.shared_bns:
            return self.L["Passthrough"](layer)
        c, shift = G._bn_affine(layer)
        return self.L["Affine"](layer, c, shift)

    def _merged_add(self, layer):
        mg = self.a.merges[layer.name]
        pm, pp = self.plan[mg["main"]], self.plan[mg["proj"]]
        km, kp = np.asarray(pm.kernel, np.float64), np.asarray(pp.kernel, np.float64)
        kh, kw, cm, cout = km.shape
        kk = np.zeros((kh, kw, cm + kp.shape[2], cout))
        kk[:, :, :cm] = km
        kk[kh // 2, kw // 2, cm:] = kp[0, 0]
        bias = (np.zeros(cout) if pm.bias is None else np.asarray(pm.bias, np.float64)) + \
               (np.zeros(cout) if pp.bias is None else np.asarray(pp.bias, np.float64))
        if mg.get("bn"):  # shared BN after the add: its shift is the merged conv's bias
            bias = bias + G._bn_affine(self.a.shared_bns[mg["bn"]])[1]
        self.plan[layer.name] = MergedConvPlan(main=mg["main"], proj=mg["proj"], shared_bn=mg.get("bn"),
                                               w_bits=pm.w_bits, n=pm.n, kernel=kk.astype(np.float32),
                                               bias=bias.astype(np.float32))
        return self.L["MergedConvAdd"](layer, kk, bias, mg["main_first"])

    def _grid_add(self, layer):
        k = G._grid_add_bits(layer)
        self.plan[layer.name] = GridAddPlan(a_bits=k)
        on_grid = [G._grid_source_bits(t._keras_history.operation) == k for t in layer.input]
        return self.L["GridAdd"](layer, k, on_grid)

    def _grid_mean(self, layer):
        k = G._gap_grid_bits(layer)
        hw = int(np.prod([int(d) for d in layer.input.shape[1:3]]))
        gm = self.L["GridMean"](layer, 2**k - 1, hw)
        self.plan[layer.name] = GridMeanPlan(a_bits=k, hw=hw, scale_out=gm.step, exact=(2**k - 1) * hw <= 255)
        return gm

    def _activation(self, layer):
        keras = _keras()
        self.plan[layer.name] = ActPlan(a_bits=int(layer.a_bits))
        p = G._producer(layer)
        while isinstance(p, (keras.layers.ReLU, keras.layers.Identity)):
            p = G._producer(p)
        on_grid = self.opts.int8 and p is not None and G._grid_add_bits(p) == int(layer.a_bits)
        return self.L["ActQ"](layer, self.opts.mode, on_grid=on_grid)

    # ------------------------------------------------------------------ input
    def inputs(self):
        """``(pixels Input, the tensor the cloned model reads)``: input fake-quant (int8), the
        exact stem's ``pixels − 128``, or the in-graph normalisation (``input="normalised"``:
        ``(normalised Input, its int8 grid)``)."""
        keras = _keras()
        shape = tuple(int(d) for d in self.model.input_shape[1:])
        if self.opts.input == "normalised":
            x0 = keras.Input(shape=shape, dtype="float32", name="normalised")
            if not self.opts.int8:
                return x0, x0
            return x0, self.L["InputFakeQuant"](*G.normalised_range(self.mean, self.std), name="normalised_fq")(x0)
        pixels = keras.Input(shape=shape, dtype="float32", name="pixels")
        x = pixels
        if self.opts.int8:
            x = self.L["InputFakeQuant"](name="pixels_fq")(x)
        if self.a.exact_stem is not None:
            x = self.L["CentrePixels"](name="pixels_centred")(x)
        if self.a.stem is None and self.a.exact_stem is None:
            x = G.preprocessing_layer(self.mean, self.std)(x)
        return pixels, x


def _fresh_copy(layer):
    """A weightless layer is re-created from its config (unique names and inspectable outputs in
    the view); layers with weights are reused as they are (shared weights)."""
    if not layer.weights:
        try:
            return layer.__class__.from_config(layer.get_config())
        except Exception:
            pass
    return layer


def build_view(model, mean, std, opts: ViewOptions):
    """``(view, plan)``: see :func:`rolekd_tf.export.graph.build_export_view`."""
    import os

    keras = _keras()
    if not isinstance(model, keras.Model) or not _is_functional(model):
        raise ExportError(f"model {getattr(model, 'name', model)!r} is not a functional Keras model; only functional models can be exported")
    mean, std = G.model_normalisation(model, mean, std)
    builder = _ViewBuilder(model, mean, std, opts)
    try:
        pixels, x = builder.inputs()
        inner = keras.models.clone_model(model, clone_function=builder.clone)
    except ExportError:
        raise
    except Exception as e:
        if os.environ.get("ROLEKD_DEBUG"):
            raise
        raise ExportError(f"cannot build the export graph of {model.name!r}: {type(e).__name__}: {str(e)[:200]}") from None
    view = keras.Model(pixels, inner(x), name=f"{model.name}_export_{opts.mode}")
    return view, builder.plan


def _is_functional(model) -> bool:
    """A functional model (or a subclass built with the functional constructor): a graph of layers
    ``clone_model`` can rebuild, not a subclassed ``call`` nor a Sequential."""
    return any(c.__name__ == "Functional" for c in type(model).__mro__)
