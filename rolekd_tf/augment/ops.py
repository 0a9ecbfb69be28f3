"""The 15 PBA augmentation ops (REFERENCE.md §1), batched and vectorised in TensorFlow.

Every op has the signature ``fn(images, levels, mask, *, fill, seed) -> images``:

* ``images`` float32 ``[B, H, W, 3]``, integer-valued in 0..255 (uint8 is accepted too);
* ``levels`` int32 ``[B]`` in 0..9 (clamped), so every sample has its own magnitude;
* ``mask`` bool ``[B]``: samples with ``False`` are returned untouched;
* ``fill`` float32 ``[3]``: the dataset mean colour in 0..255 (pixels exposed by a warp and the
  Cutout square get ``round(fill)``);
* ``seed``: int32 ``[2]`` stateless seed for the random sign of a warp / the Cutout centre.

The result is integer-valued float32 in 0..255: every op ends with the uint8 round trip that
PIL implies (PIL's ``Image.blend`` truncates, the warps copy pixels, LUT ops are integer).

Semantics follow PIL as PBA calls it; all 15 ops are bit-exact against Pillow 13 (see
tests/augment/test_ops.py):

* warps: PIL's nearest-neighbour affine engine, reproduced exactly — the 6 coefficients (the
  ``Image.transform(AFFINE)`` data, mapping output → input, pixel centres at +½; Rotate's from
  ``Image.rotate`` about ``(W/2, H/2)``) are turned into PIL's 16.16 fixed point per
  (op, sign, level) once per image size, and each output pixel gathers input
  ``(xx >> 16, yy >> 16)`` (``ImageProjectiveTransformV3`` disagreed with PIL on ~0.3 % of
  rotated and ~1.6 % of ShearX/Y-level-4 pixels — float32 ``round`` vs fixed-point ``floor``).
* enhancers: ``out = floor(clip(d + f·(x − d), 0, 255))`` in float32 (``Image.blend``), with
  PIL's degenerate images (black; ITU-R 601 luma ``(19595R+38470G+7471B+2¹⁵)>>16`` — PIL's
  fixed-point form of 299/587/114 ‰; the luma mean ``int(mean+0.5)``; SMOOTH = 3×3
  ``[[1,1,1],[1,5,1],[1,1,1]]/13`` rounded, border pixels kept). The float32 product
  ``f·(x − d)`` comes from a table, so it is rounded before the add even under XLA (no FMA).
* Equalize / AutoContrast: PIL's ``ImageOps`` LUT algorithms per channel (AutoContrast's LUT is
  computed in float64 like Python does, so ``int()`` truncation matches exactly).

Performance design (benchmarks/results/augment.md): every op is one case of a single fused
kernel, ``apply_fused`` — four whole-batch stages (warp gather, blend, per-sample-channel LUT
gather, Cutout box), each the exact identity for samples whose op it does not handle and each
skipped (``tf.cond``) when no sample needs it; the stages run as one XLA-compiled function
(``ROLEKD_AUGMENT_XLA=0`` disables XLA). The random draws and the Equalize / AutoContrast LUTs
(histograms of the few samples that need them) are computed outside XLA. The per-op functions
below are that kernel with a single op present, so tests/augment/test_ops.py checks the
production code path.
"""
from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

OP_NAMES = (
    "Rotate", "TranslateX", "TranslateY", "Brightness", "Color", "Invert", "Sharpness",
    "Posterize", "ShearX", "Solarize", "ShearY", "Equalize", "AutoContrast", "Cutout",
    "Contrast",
)
NUM_OPS = len(OP_NAMES)
NUM_LEVELS = 10
_PARAMETER_MAX = 10
SIGNED_OPS = ("Rotate", "TranslateX", "TranslateY", "ShearX", "ShearY")


def _int_parameter(level: int, maxval: float) -> int:
    return int(level * maxval / _PARAMETER_MAX)


def _float_parameter(level: int, maxval: float) -> float:
    return float(level) * maxval / _PARAMETER_MAX


# Level → parameter tables, computed with PBA's own formulas (Python double precision).
ROTATE_DEGREES = tuple(_int_parameter(L, 30) for L in range(NUM_LEVELS))          # 3L
TRANSLATE_PIXELS = tuple(_int_parameter(L, 10) for L in range(NUM_LEVELS))        # L
SHEAR_COEFF = tuple(_float_parameter(L, 0.3) for L in range(NUM_LEVELS))          # 0.03L
ENHANCE_FACTOR = tuple(_float_parameter(L, 1.8) + 0.1 for L in range(NUM_LEVELS))  # .1+.18L
POSTERIZE_BITS = tuple(4 - _int_parameter(L, 4) for L in range(NUM_LEVELS))
SOLARIZE_THRESHOLD = tuple(256 - _int_parameter(L, 256) for L in range(NUM_LEVELS))
CUTOUT_SIZE = tuple(_int_parameter(L, 20) for L in range(NUM_LEVELS))             # 2L


# ----------------------------------------------------------------------------- helpers
def _prep(images, levels, mask, fill):
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    levels = tf.clip_by_value(tf.cast(tf.convert_to_tensor(levels), tf.int32), 0, NUM_LEVELS - 1)
    mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    fill = tf.reshape(tf.cast(tf.convert_to_tensor(fill), tf.float32), [3])
    return images, levels, mask, fill


def _table(values, levels, dtype=tf.float32):
    return tf.gather(tf.constant(np.asarray(values), dtype=dtype), levels)


def random_signs(seed, batch_size):
    """±1 per sample (PBA: negate when ``random() > 0.5``) — the warps' random sign."""
    u = tf.random.stateless_uniform([batch_size], seed=seed)
    return tf.where(u > 0.5, -1.0, 1.0)


def cutout_centres(seed, batch_size, height, width):
    """Uniform integer centres ``(row, col)`` per sample, as two int32 ``[B]`` tensors."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    r = tf.random.stateless_uniform([batch_size], seed=s1, minval=0, maxval=height, dtype=tf.int32)
    c = tf.random.stateless_uniform([batch_size], seed=s2, minval=0, maxval=width, dtype=tf.int32)
    return r, c


def _to_int(images):
    return tf.cast(images, tf.int32)


def _fix(v: float) -> int:
    """PIL's 16.16 fixed point: FLOOR(v·65536 + 0.5)."""
    return int(math.floor(v * 65536.0 + 0.5))


def _pil_fixed_coeffs(a) -> tuple[int, ...]:
    """PIL's nearest-neighbour affine engine (``affine_fixed``) on coefficients ``a`` (the data
    tuple of ``Image.transform(AFFINE)``): input x = (A2 + y·A1 + x·A0) >> 16 with A0, A1, A3,
    A4 the fixed-point coefficients and A2 / A5 the offsets moved to the pixel centre."""
    a0, a1, a2, a3, a4, a5 = (float(v) for v in a)
    return (_fix(a0), _fix(a1), _fix(a2 + a0 * 0.5 + a1 * 0.5),
            _fix(a3), _fix(a4), _fix(a5 + a3 * 0.5 + a4 * 0.5))


def _pil_rotate_coeffs(degrees: float, width: int, height: int) -> tuple[float, ...]:
    """``Image.rotate(degrees)`` (expand=False, centre = (W/2, H/2)) as AFFINE data."""
    angle = -math.radians(degrees % 360.0)
    m = [round(math.cos(angle), 15), round(math.sin(angle), 15), 0.0,
         round(-math.sin(angle), 15), round(math.cos(angle), 15), 0.0]
    cx, cy = width / 2.0, height / 2.0
    m[2] = m[0] * -cx + m[1] * -cy + cx
    m[5] = m[3] * -cx + m[4] * -cy + cy
    return tuple(m)


def _warp_table(op: str, width: int, height: int) -> np.ndarray:
    """int64 [2 (sign +1, −1), 10 levels, 6] fixed-point PIL coefficients of a warp op."""
    table = np.zeros((2, NUM_LEVELS, 6), np.int64)
    for si, sign in enumerate((1, -1)):
        for L in range(NUM_LEVELS):
            if op == "Rotate":
                a = _pil_rotate_coeffs(sign * ROTATE_DEGREES[L], width, height)
            elif op == "TranslateX":
                a = (1, 0, sign * TRANSLATE_PIXELS[L], 0, 1, 0)
            elif op == "TranslateY":
                a = (1, 0, 0, 0, 1, sign * TRANSLATE_PIXELS[L])
            elif op == "ShearX":
                a = (1, sign * SHEAR_COEFF[L], 0, 0, 1, 0)
            elif op == "ShearY":
                a = (1, 0, 0, sign * SHEAR_COEFF[L], 1, 0)
            else:
                raise KeyError(op)
            table[si, L] = _pil_fixed_coeffs(a)
    return table


# float32(factor_L) · k for k = −255..255, computed as PIL's C does (one float32 product).
_BLEND_PRODUCTS = (np.asarray(ENHANCE_FACTOR, np.float64).astype(np.float32)[:, None]
                   * np.arange(-255, 256, dtype=np.float32)[None, :])        # [10, 511]


def _blend(d, x, levels):
    """PIL ``Image.blend(d, x, factor_L)`` on uint8: ``floor(clip(d + f·(x − d)))`` in float32
    with the product rounded to float32 before the add, as PIL's C does. The product is looked
    up in ``_BLEND_PRODUCTS`` (x − d is an integer in −255..255), so no compiler can contract
    the multiply-add into an FMA (XLA:CPU always allows FP-op fusion; measured, an FMA changes
    ~0.1 % of Color pixels by 1). ``levels`` int32, broadcastable against x."""
    idx = levels * 511 + tf.cast(x - d, tf.int32) + 255
    p = tf.gather(tf.constant(_BLEND_PRODUCTS.reshape(-1)), idx)
    return tf.floor(tf.clip_by_value(d + p, 0.0, 255.0))


def _luma(images):
    """PIL ``convert('L')``: (19595·R + 38470·G + 7471·B + 32768) >> 16, int32 [B,H,W]."""
    x = _to_int(images)
    y = x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 32768
    return tf.bitwise.right_shift(y, 16)


# ----------------------------------------------------------------------------- fused kernel
# All 15 ops run as one fixed sequence of whole-batch stages; every sample has (at most) one op,
# and a stage is the exact identity for samples whose op is not in it, so the stage order does
# not matter:
#   1. warp     (Rotate, TranslateX/Y, ShearX/Y): one gather with per-sample PIL fixed-point
#                coefficients (identity coefficients for the other samples);
#   2. blend    (Color, Sharpness): d + f·(x − d) with per-pixel degenerate d (d = x, f = 1 for
#                the other samples — exact, all values are small integers);
#   3. LUT      (Invert, Posterize, Solarize, Brightness, Contrast, Equalize, AutoContrast):
#                one float32 [B, 3, 256] table per sample-channel (identity for the others),
#                applied with one flat gather;
#   4. Cutout:  a per-sample box (empty for the other samples).
# Each stage (and each expensive sub-part: histograms, min/max, luma mean, SMOOTH) runs under a
# ``tf.cond`` on "some sample needs it", so a batch pays only for the ops it actually uses.
_I = {name: i for i, name in enumerate(OP_NAMES)}
NONE = NUM_OPS                                  # op code of untouched samples
WARP_OPS = frozenset(_I[n] for n in SIGNED_OPS)
BLEND_OPS = frozenset(_I[n] for n in ("Color", "Sharpness"))
LUT_OPS = frozenset(_I[n] for n in ("Invert", "Posterize", "Solarize", "Brightness", "Contrast",
                                    "Equalize", "AutoContrast"))
HIST_OPS = frozenset(_I[n] for n in ("Equalize", "AutoContrast"))   # LUTs built outside XLA
ALL_OPS = frozenset(range(NUM_OPS))
_IDENTITY_FIXED = _pil_fixed_coeffs((1, 0, 0, 0, 1, 0))
_WARP_TABLES: dict = {}


def _fused_warp_table(width: int, height: int) -> np.ndarray:
    """[NUM_OPS + 1, 2, 10, 6] fixed-point coefficients: the warps' PIL tables, identity for
    every other op (and for NONE). int32 when no index sum can overflow, else int64."""
    key = (int(width), int(height))
    if key not in _WARP_TABLES:
        t = np.tile(np.asarray(_IDENTITY_FIXED, np.int64), (NUM_OPS + 1, 2, NUM_LEVELS, 1))
        for name in SIGNED_OPS:
            t[_I[name]] = _warp_table(name, *key)
        a = np.abs(t)
        bound = np.maximum(a[..., 2] + (height - 1) * a[..., 1] + (width - 1) * a[..., 0],
                           a[..., 5] + (height - 1) * a[..., 4] + (width - 1) * a[..., 3])
        _WARP_TABLES[key] = t.astype(np.int32) if bound.max() < 2 ** 31 else t
    return _WARP_TABLES[key]


def _any_of(code, op_ids):
    return tf.reduce_any(tf.reduce_any(tf.equal(code[:, None], sorted(op_ids)), axis=1))


def _maybe(present, op_ids, code, fn, x):
    """``fn(x)`` if some sample's op is in ``op_ids`` (static skip if none can be), else x."""
    ids = present & op_ids
    if not ids:
        return x
    if (ids == present and len(present) == 1) or not USE_CONDS:
        return fn(x)                             # single-op call: it is needed
    return tf.cond(_any_of(code, ids), lambda: fn(x), lambda: x)


def _warp_stage(x, code, levels, neg, fill):
    b, h, w = _batch_size(x), x.shape[1], x.shape[2]
    table = _fused_warp_table(int(w), int(h))
    dt = tf.as_dtype(table.dtype)
    coeffs = tf.gather_nd(tf.constant(table), tf.stack([code, neg, levels], axis=1))  # [B, 6]
    a = [coeffs[:, k][:, None, None] for k in range(6)]
    y = tf.range(h, dtype=dt)[None, :, None]
    xx = tf.range(w, dtype=dt)[None, None, :]
    xin = tf.bitwise.right_shift(a[2] + y * a[1] + xx * a[0], 16)        # arithmetic = floor
    yin = tf.bitwise.right_shift(a[5] + y * a[4] + xx * a[3], 16)
    valid = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    n = b * (h * w)
    base = tf.range(b)[:, None, None] * (h * w)
    idx = tf.where(valid, base + tf.cast(yin * w + xin, tf.int32), n)     # n → fill row
    flat = tf.concat([tf.reshape(x, [n, 3]), tf.reshape(tf.round(fill), [1, 3])], axis=0)
    return tf.reshape(tf.gather(flat, idx), tf.shape(x))


def _blend_stage(x, code, levels, present):
    color, sharp = _I["Color"], _I["Sharpness"]
    d = x                                       # d = x: the product is 0, x is unchanged
    if color in present:
        d = _maybe(present, {color}, code, lambda d: tf.where(
            tf.equal(code, color)[:, None, None, None],
            tf.cast(_luma(x), tf.float32)[..., None], d), d)
    if sharp in present:
        d = _maybe(present, {sharp}, code, lambda d: tf.where(
            tf.equal(code, sharp)[:, None, None, None], _smooth_degenerate(x), d), d)
    return _blend(d, x, levels[:, None, None, None])


def _static_lut_table() -> np.ndarray:
    """float32 [NUM_OPS + 1, 10, 256]: the LUT of every (op, level) that depends on nothing
    else (Invert, Posterize, Solarize, Brightness; identity for every other op), computed with
    PIL's own integer / float32 arithmetic."""
    i = np.arange(256)
    t = np.tile(i.astype(np.float32), (NUM_OPS + 1, NUM_LEVELS, 1))
    for L in range(NUM_LEVELS):
        t[_I["Invert"], L] = 255 - i
        t[_I["Posterize"], L] = i & (256 - (1 << (8 - POSTERIZE_BITS[L])))
        t[_I["Solarize"], L] = np.where(i >= SOLARIZE_THRESHOLD[L], 255 - i, i)
        # Image.blend(black, x, f): 0 + float32(f)·x (float32 product), clip, truncate
        t[_I["Brightness"], L] = np.floor(np.clip(
            np.float32(0) + _BLEND_PRODUCTS[L, 255 + i], 0, 255))
    return t


_STATIC_LUTS = _static_lut_table()


def _lut_stage(x, code, levels, ext_lut, present):
    b = _batch_size(x)
    # [B, 256]: one row per sample from the constant (op, level) table ...
    lut = tf.gather_nd(tf.constant(_STATIC_LUTS), tf.stack([code, levels], axis=1))
    if _I["Contrast"] in present:
        # ... Contrast: blend with the flat grey int(mean luma + 0.5), per sample ...
        def contrast(lut):
            i = tf.range(256, dtype=tf.float32)[None, :]
            grey = _mean_luma(x)[:, None]
            return tf.where(tf.equal(code, _I["Contrast"])[:, None],
                            _blend(grey, i, levels[:, None]), lut)
        lut = _maybe(present, {_I["Contrast"]}, code, contrast, lut)
    lut = tf.broadcast_to(lut[:, None, :], [b, 3, 256])
    hist_ops = present & HIST_OPS
    if hist_ops:
        # ... and the per-channel Equalize / AutoContrast LUTs built outside XLA.
        is_hist = tf.reduce_any(tf.equal(code[:, None], sorted(hist_ops)), axis=1)
        lut = tf.where(is_hist[:, None, None], ext_lut, lut)
    # one flat gather: entry (b·3 + channel)·256 + value
    offs = (tf.range(b)[:, None, None, None] * 3 + tf.range(3)[None, None, None, :]) * 256
    return tf.gather(tf.reshape(lut, [-1]), offs + _to_int(x))


def _equalize_lut_batch(xi):
    """PIL's equalize LUT for every sample-channel of int32 ``xi`` [B,H,W,3] → int32 [B*3, 256]:
    the B·3 histograms from one row-wise bincount over ``channel·256 + value``."""
    h, w = xi.shape[1], xi.shape[2]
    ids = tf.reshape(xi + tf.constant([0, 256, 512]), [-1, h * w * 3])     # [B, HW·3]
    hist = tf.math.bincount(ids, minlength=768, maxlength=768, axis=-1, dtype=tf.int32)
    return _equalize_lut_from_hist(tf.reshape(hist, [-1, 256]), h * w)


def _histogram_luts(images, code, present):
    """float32 [B, 3, 256]: the Equalize / AutoContrast LUT of each sample whose op is one of
    them (identity elsewhere), computed on those samples only and outside XLA — a batch-wide
    bincount is a slow serial scatter under XLA:CPU, and AutoContrast's float64 ``i·scale +
    offset`` must be rounded twice like Python's (XLA:CPU would contract it into an FMA)."""
    b = tf.shape(images)[0]
    ident = tf.broadcast_to(tf.range(256, dtype=tf.float32), [b, 3, 256])
    ids = present & HIST_OPS
    if not ids:
        return ident

    def build(lut):
        want = tf.reduce_any(tf.equal(code[:, None], sorted(ids)), axis=1)
        idx = tf.cast(tf.where(want), tf.int32)                            # [k, 1]
        sub = tf.round(tf.clip_by_value(tf.gather_nd(images, idx), 0.0, 255.0))
        k = tf.shape(idx)[0]
        new = None
        if _I["Equalize"] in ids:
            new = tf.reshape(_equalize_lut_batch(_to_int(sub)), [k, 3, 256])
        if _I["AutoContrast"] in ids:
            ac = tf.reshape(_autocontrast_lut(sub), [k, 3, 256])
            new = ac if new is None else tf.where(
                tf.equal(tf.gather_nd(code, idx), _I["AutoContrast"])[:, None, None], ac, new)
        return tf.tensor_scatter_nd_update(lut, idx, tf.cast(new, tf.float32))

    return _maybe(present, ids, code, build, ident)


def _cutout_stage(x, code, levels, r, c, fill):
    half = tf.where(tf.equal(code, _I["Cutout"]), _table(CUTOUT_SIZE, levels, tf.int32) // 2, 0)
    return paint_squares(x, r, c, half, tf.round(fill))


def _batch_size(x):
    """Static batch size when known (XLA needs the bincount length at compile time)."""
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def _stages(images, code, levels, neg, rows, cols, ext_lut, fill, present):
    """The four stages on float32 images; ``code`` int32 [B] (NONE = untouched), ``neg`` int32
    [B] (1: negative warp), ``rows``/``cols`` int32 [B] Cutout centres."""
    x = tf.round(tf.clip_by_value(images, 0.0, 255.0))         # the uint8 image PIL would get
    stages = (
        (WARP_OPS, lambda x: _warp_stage(x, code, levels, neg, fill)),
        (BLEND_OPS, lambda x: _blend_stage(x, code, levels, present)),
        (LUT_OPS, lambda x: _lut_stage(x, code, levels, ext_lut, present)),
        (frozenset({_I["Cutout"]}), lambda x: _cutout_stage(x, code, levels, rows, cols, fill)),
    )
    for op_ids, fn in stages:
        x = _maybe(present, op_ids, code, fn, x)
        x.set_shape(images.shape)              # keep the static batch size through the conds
    return tf.where(tf.not_equal(code, NONE)[:, None, None, None], x, images)


# XLA fuses the stages' elementwise work into a few loops (measured 4–8× faster than the same
# stages as plain TF kernels on this CPU, see benchmarks/results/augment.md);
# ROLEKD_AUGMENT_XLA=0 runs the same graph without XLA, ROLEKD_AUGMENT_CONDS=0 computes every
# stage unconditionally (measured slower). The random draws stay outside the compiled
# function, so they are the plain TF kernels' values either way.
USE_XLA = os.environ.get("ROLEKD_AUGMENT_XLA", "1") != "0"
USE_CONDS = os.environ.get("ROLEKD_AUGMENT_CONDS", "1") != "0"
_COMPILED: dict = {}


def _compiled_stages(present):
    key = (present, USE_XLA)
    if key not in _COMPILED:
        _COMPILED[key] = tf.function(
            lambda images, code, levels, neg, rows, cols, ext_lut, fill: _stages(
                images, code, levels, neg, rows, cols, ext_lut, fill, present),
            jit_compile=USE_XLA, reduce_retracing=False)
    return _COMPILED[key]


def apply_fused(images, op_index, levels, mask, *, fill, seed, present=ALL_OPS):
    """Apply op ``op_index[i]`` (int32 [B]) at ``levels[i]`` to every sample with ``mask[i]``
    (out-of-range indices: untouched) in one pass of the four stages above.

    ``present``: the static set of op indices that may occur (stages of other ops are not
    built). Random draws: the warps' sign is ``random_signs(seed, B)[i]`` and the Cutout centre
    ``cutout_centres(seed, B, H, W)`` at index i, whatever the other samples' ops are.
    """
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    if images.shape[1] is None or images.shape[2] is None:
        raise ValueError(f"image height/width must be static, got shape {images.shape}")
    op_index = tf.cast(tf.convert_to_tensor(op_index), tf.int32)
    seed = tf.convert_to_tensor(seed)
    present = frozenset(present)
    s = tf.shape(images)
    active = mask & (op_index >= 0) & (op_index < NUM_OPS)
    code = tf.where(active, op_index, NONE)
    neg = tf.cast(random_signs(seed, s[0]) < 0, tf.int32)
    rows, cols = cutout_centres(seed, s[0], s[1], s[2])
    ext_lut = _histogram_luts(images, code, present)
    return _compiled_stages(present)(images, code, levels, neg, rows, cols, ext_lut, fill)


def _single(name):
    k = _I[name]

    def fn(images, levels, mask, *, fill, seed):
        images = tf.convert_to_tensor(images)
        b = tf.shape(images)[0]
        return apply_fused(images, tf.fill([b], k), levels, mask, fill=fill, seed=seed,
                           present={k})
    return fn


# ----------------------------------------------------------------------------- the 15 ops
def rotate(images, levels, mask, *, fill, seed):
    """PIL ``rotate(±3L°)`` about the centre, nearest, exposed pixels = mean colour."""
    return _single("Rotate")(images, levels, mask, fill=fill, seed=seed)


def translate_x(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, ±L, 0, 1, 0)."""
    return _single("TranslateX")(images, levels, mask, fill=fill, seed=seed)


def translate_y(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, 0, 0, 1, ±L)."""
    return _single("TranslateY")(images, levels, mask, fill=fill, seed=seed)


def shear_x(images, levels, mask, *, fill, seed):
    """PIL affine (1, ±0.03L, 0, 0, 1, 0) (about the top-left corner, as PBA)."""
    return _single("ShearX")(images, levels, mask, fill=fill, seed=seed)


def shear_y(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, 0, ±0.03L, 1, 0)."""
    return _single("ShearY")(images, levels, mask, fill=fill, seed=seed)


def _factor(levels):
    # PIL receives a Python float and blends with a C float: cast the double to float32.
    return _table(np.asarray(ENHANCE_FACTOR, np.float64).astype(np.float32), levels)


def brightness(images, levels, mask, *, fill, seed):
    """ImageEnhance.Brightness(0.1+0.18L): blend with black."""
    return _single("Brightness")(images, levels, mask, fill=fill, seed=seed)


def color(images, levels, mask, *, fill, seed):
    """ImageEnhance.Color(0.1+0.18L): blend with the luma image."""
    return _single("Color")(images, levels, mask, fill=fill, seed=seed)


def contrast(images, levels, mask, *, fill, seed):
    """ImageEnhance.Contrast(0.1+0.18L): blend with the flat grey int(mean luma + 0.5)."""
    return _single("Contrast")(images, levels, mask, fill=fill, seed=seed)


def sharpness(images, levels, mask, *, fill, seed):
    """ImageEnhance.Sharpness(0.1+0.18L): blend with PIL's SMOOTH-filtered image."""
    return _single("Sharpness")(images, levels, mask, fill=fill, seed=seed)


def invert(images, levels, mask, *, fill, seed):
    """ImageOps.invert: 255 − x."""
    return _single("Invert")(images, levels, mask, fill=fill, seed=seed)


def posterize(images, levels, mask, *, fill, seed):
    """ImageOps.posterize(4 − int(4L/10)): keep the top bits."""
    return _single("Posterize")(images, levels, mask, fill=fill, seed=seed)


def solarize(images, levels, mask, *, fill, seed):
    """ImageOps.solarize(256 − int(25.6L)): invert pixels ≥ threshold."""
    return _single("Solarize")(images, levels, mask, fill=fill, seed=seed)


def _equalize_lut_from_hist(hist, n):
    """PIL's equalize LUT from int32 histograms [R, 256] of n pixels each → int32 [R, 256]."""
    idx = tf.range(256)[None, :]
    last = tf.reduce_max(tf.where(hist > 0, idx, -1), axis=1)            # last non-zero bin
    h_last = tf.gather(hist, tf.maximum(last, 0), batch_dims=1)
    step = (n - h_last) // 255                                            # [R]
    safe = tf.maximum(step, 1)[:, None]
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    lut = tf.math.floordiv(safe // 2 + cum, safe)
    return tf.where(step[:, None] > 0, tf.minimum(lut, 255), idx)


def _autocontrast_lut(images):
    """PIL's autocontrast (cutoff 0) LUT per sample-channel → int32 [B*3, 256]."""
    lo = tf.reshape(tf.cast(tf.reduce_min(images, axis=[1, 2]), tf.float64), [-1, 1])
    hi = tf.reshape(tf.cast(tf.reduce_max(images, axis=[1, 2]), tf.float64), [-1, 1])
    scale = 255.0 / tf.maximum(hi - lo, 1.0)          # float64 like Python: int() must agree
    offset = -lo * scale
    i = tf.range(256, dtype=tf.float64)[None, :]
    lut = tf.clip_by_value(tf.cast(i * scale + offset, tf.int32), 0, 255)  # cast truncates
    return tf.where(hi > lo, lut, tf.range(256)[None, :])


def _mean_luma(images):
    """ImageEnhance.Contrast's grey level: int(mean(luma) + 0.5), float32 [B]."""
    y = _luma(images)
    total = tf.reduce_sum(y, axis=[1, 2])                 # exact in int32 (< 2**31 / 255 px)
    n = tf.shape(y)[1] * tf.shape(y)[2]
    # floor(total/n + 0.5) exactly; Python's float division cannot cross the .5 boundary
    # (total/n is ≥ 1/(2n) away from it, far above a double's rounding error).
    return tf.cast((2 * total + n) // (2 * n), tf.float32)


def _smooth_degenerate(images):
    """PIL ``filter(SMOOTH)``: 3×3 [[1,1,1],[1,5,1],[1,1,1]]/13, rounded; border kept.

    The interior sum is 9 shifted slices + 4·centre (XLA fuses them into one loop; its
    depthwise convolution was ~50× slower on this CPU)."""
    h, w = images.shape[1], images.shape[2]
    if h is None or w is None or h < 3 or w < 3:
        return images
    # Integer weighted sums are exact in float32 (< 2**24); S/13 is never a tie → round.
    s = 4.0 * images[:, 1:h - 1, 1:w - 1]
    for dy in range(3):
        for dx in range(3):
            s = s + images[:, dy:h - 2 + dy, dx:w - 2 + dx]
    smooth = tf.floor(s / 13.0 + 0.5)
    mid = tf.concat([images[:, 1:h - 1, :1], smooth, images[:, 1:h - 1, w - 1:]], axis=2)
    return tf.concat([images[:, :1], mid, images[:, h - 1:]], axis=1)


def equalize(images, levels, mask, *, fill, seed):
    """ImageOps.equalize per channel (PIL's LUT: step = (N − h[last])//255, lut[i] =
    (step//2 + Σ_{j<i} h[j]) // step; identity when step = 0)."""
    return _single("Equalize")(images, levels, mask, fill=fill, seed=seed)


def autocontrast(images, levels, mask, *, fill, seed):
    """ImageOps.autocontrast (cutoff 0) per channel: lut[i] = clip(int(i·scale − lo·scale))."""
    return _single("AutoContrast")(images, levels, mask, fill=fill, seed=seed)


def cutout(images, levels, mask, *, fill, seed):
    """Square of side 2L (clipped at the border) at a uniform centre, set to the mean colour."""
    return _single("Cutout")(images, levels, mask, fill=fill, seed=seed)


def paint_squares(images, r, c, half, value):
    """Per sample: rows [r−half, r+half) × cols [c−half, c+half) (clipped) ← ``value`` [3].
    ``r``, ``c``, ``half``: int32 [B]."""
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.range(h)[None, :]
    cols = tf.range(w)[None, :]
    in_r = (rows >= (r - half)[:, None]) & (rows < (r + half)[:, None])   # [B, H]
    in_c = (cols >= (c - half)[:, None]) & (cols < (c + half)[:, None])   # [B, W]
    box = in_r[:, :, None] & in_c[:, None, :]
    return tf.where(box[..., None], tf.reshape(value, [1, 1, 1, 3]), images)


OPS = (rotate, translate_x, translate_y, brightness, color, invert, sharpness, posterize,
       shear_x, solarize, shear_y, equalize, autocontrast, cutout, contrast)
OP_BY_NAME = dict(zip(OP_NAMES, OPS))


# ----------------------------------------------------------------------------- dispatch
def apply_op_by_index(images, op_index, levels, mask, *, fill, seed, method="fused"):
    """Apply op ``op_index`` (scalar, or int32 ``[B]`` — one op per sample) at ``levels``.

    ``method``:

    * ``"fused"`` (default, fastest measured — benchmarks/results/augment.md): ``apply_fused``,
      the four whole-batch stages, each skipped when no sample needs it; a scalar
      ``op_index`` is broadcast to the batch;
    * ``"partition"`` (``[B]`` only): ``tf.dynamic_partition`` the batch by op, run each op
      function on its own samples, ``tf.dynamic_stitch`` back (the previous default: ~15 small
      sub-graphs per call, dominated by per-kernel overhead at CIFAR sizes);
    * ``"dense"`` (``[B]`` only): run all 15 op functions on the whole batch, each masked to its
      samples (a slow reference).

    Random draws differ between the methods (per op / per partition vs over the whole batch).
    """
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    op_index = tf.cast(tf.convert_to_tensor(op_index), tf.int32)
    seed = tf.convert_to_tensor(seed)
    b = tf.shape(images)[0]

    if method == "fused":
        if op_index.shape.rank == 0:
            op_index = tf.fill([b], op_index)
        return apply_fused(images, op_index, levels, mask, fill=fill, seed=seed)
    if method not in ("partition", "dense"):
        raise ValueError(f"method={method!r}: expected 'fused', 'partition' or 'dense'")

    seeds = [tf.random.experimental.stateless_fold_in(seed, k) for k in range(NUM_OPS)]
    if op_index.shape.rank == 0:
        branches = [
            (lambda fn=fn, s=s: fn(images, levels, mask, fill=fill, seed=s))
            for fn, s in zip(OPS, seeds)]
        return tf.switch_case(tf.clip_by_value(op_index, 0, NUM_OPS - 1), branches)

    if method == "dense":
        out = images
        for k, fn in enumerate(OPS):
            out = fn(out, levels, mask & tf.equal(op_index, k), fill=fill, seed=seeds[k])
        return out

    # Partition NUM_OPS holds the untouched samples (mask False or op index out of range).
    valid = mask & (op_index >= 0) & (op_index < NUM_OPS)
    part = tf.where(valid, op_index, NUM_OPS)
    pos = tf.dynamic_partition(tf.range(b), part, NUM_OPS + 1)
    imgs = tf.dynamic_partition(images, part, NUM_OPS + 1)
    lvls = tf.dynamic_partition(levels, part, NUM_OPS + 1)
    outs = []
    for k, fn in enumerate(OPS):
        ones = tf.ones_like(lvls[k], dtype=tf.bool)
        outs.append(fn(imgs[k], lvls[k], ones, fill=fill, seed=seeds[k]))
    outs.append(imgs[NUM_OPS])
    out = tf.dynamic_stitch(pos, outs)
    return tf.reshape(out, tf.shape(images))
