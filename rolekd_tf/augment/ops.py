"""The 15 PBA augmentation ops (docs/METHOD.md §1), batched and vectorised in TensorFlow.

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
kernel, ``apply_fused``, compiled with XLA. Each sample
has at most one op per call, so the expensive ops run only on the samples that selected them:
the warp, blend and LUT groups each compact their members and process them in chunks of
``CHUNK`` (8) samples inside a while loop; Invert /
Posterize / Solarize / Cutout are one vectorised integer pass over the whole batch. Hot loops
work on [.., W·3] views (XLA:CPU does not vectorise a trailing axis of 3). The random draws and
the Equalize / AutoContrast histograms (of the few samples that need them) are computed outside
XLA. AutoContrast's float64 products come from a table, so XLA cannot contract the add into an
FMA. The per-op functions below are that kernel with a single op present, so
tests/augment/test_ops.py checks the production code path.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from rolekd_tf.augment.policy import NUM_LEVELS, NUM_OPS
from rolekd_tf.augment.policy import OP_ORDER as OP_NAMES  # op k of a policy is OP_NAMES[k]

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
# Every sample has (at most) one op per call, so the 15 ops fall into groups that never interact
# (each is the exact identity for samples of the other groups), run in one XLA-compiled function
# per call:
#   * warps (Rotate, TranslateX/Y, ShearX/Y), blends (Color, Sharpness) and LUT ops (Brightness,
#     Contrast, Equalize, AutoContrast) — the gather-heavy ones — run on their own samples only:
#     the members of a group are compacted (a stable sort of the batch indices) and processed
#     in chunks of ``CHUNK`` samples (gather rows → op → scatter rows back; a while loop of
#     ceil(members / CHUNK) iterations, none when the group is empty);
#   * Invert, Posterize, Solarize and Cutout (integer arithmetic) run as one vectorised
#     elementwise pass over the whole batch, viewed as [B, H·W·3], with per-sample parameters
#     (identity parameters for every other sample); the same pass rounds/clips every sample.
# Only the Equalize / AutoContrast histograms (a scatter-add, serial and slow under XLA:CPU) are
# computed outside XLA, for the samples that need them.
_I = {name: i for i, name in enumerate(OP_NAMES)}
NONE = NUM_OPS                                  # op code of untouched samples
WARP_OPS = frozenset(_I[n] for n in SIGNED_OPS)
BLEND_OPS = frozenset(_I[n] for n in ("Color", "Sharpness"))
LUT_OPS = frozenset(_I[n] for n in ("Brightness", "Contrast", "Equalize", "AutoContrast"))
HIST_OPS = frozenset(_I[n] for n in ("Equalize", "AutoContrast"))   # histograms outside XLA
ARITH_OPS = frozenset(_I[n] for n in ("Invert", "Posterize", "Solarize", "Cutout"))
ALL_OPS = frozenset(range(NUM_OPS))
_IDENTITY_FIXED = _pil_fixed_coeffs((1, 0, 0, 0, 1, 0))
_WARP_TABLES: dict = {}
CHUNK = 8  #: samples per gather → op → scatter step (measured 8 vs 16 vs 32: benchmarks/results/augment.md)


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


def _member(code, op_ids):
    return tf.reduce_any(tf.equal(code[:, None], sorted(op_ids)), axis=1)


def _per_op(values, default, dtype):
    """[NUM_OPS + 1, 10] table (gathered at (op, level) per sample): ``values[op]`` (a {op
    index: 10 per-level values} dict), ``default`` for every other op."""
    t = np.full((NUM_OPS + 1, NUM_LEVELS), default, dtype.as_numpy_dtype)
    for k, v in values.items():
        t[k] = v
    return t


def _as_uint8_values(x):
    """The uint8 image PIL would get: round and clip to 0..255 (a no-op on valid input)."""
    return tf.round(tf.clip_by_value(x, 0.0, 255.0))


def _compacted(x, member, fn, chunk, aux=None):
    """Apply ``fn(sub, ids)`` (or ``fn(sub, ids, aux) -> (out, aux)`` with a loop-carried
    ``aux`` tensor) to the samples with ``member`` only: their indices are sorted to the front
    and processed ``chunk`` at a time (rows gathered, transformed, scattered back). The last
    chunk is padded with its own first index (a duplicate writes the same value)."""
    b = _batch_size(x)
    if isinstance(b, int):
        if b == 0:
            return x
        chunk = min(chunk, b)
    n = tf.reduce_sum(tf.cast(member, tf.int32))
    order = tf.argsort(tf.cast(tf.logical_not(member), tf.int32), stable=True)
    steps = (b + chunk - 1) // chunk

    def body(j, x, *aux):
        start = j * chunk
        pos = start + tf.range(chunk)
        ids = tf.gather(order, tf.where(pos < n, pos, start))
        sub = _as_uint8_values(tf.gather(x, ids))
        if aux:
            out, a = fn(sub, ids, aux[0])
            aux = (a,)
        else:
            out = fn(sub, ids)
        return (j + 1, tf.tensor_scatter_nd_update(x, ids[:, None], out)) + tuple(aux)

    state = (tf.constant(0), x) + ((aux,) if aux is not None else ())
    out = tf.while_loop(lambda j, x, *a: j * chunk < n, body, state, maximum_iterations=steps)
    return out[1]


def _warp(sub, code, levels, neg, fill):
    """PIL's nearest-neighbour affine engine on the samples ``sub`` [C, H, W, 3]."""
    c, h, w = sub.shape[0], sub.shape[1], sub.shape[2]
    table = _fused_warp_table(int(w), int(h))
    dt = tf.as_dtype(table.dtype)
    coeffs = tf.gather_nd(tf.constant(table), tf.stack([code, neg, levels], axis=1))  # [C, 6]
    a = [coeffs[:, k][:, None, None] for k in range(6)]
    y = tf.range(h, dtype=dt)[None, :, None]
    xx = tf.range(w, dtype=dt)[None, None, :]
    xin = tf.bitwise.right_shift(a[2] + y * a[1] + xx * a[0], 16)        # arithmetic = floor
    yin = tf.bitwise.right_shift(a[5] + y * a[4] + xx * a[3], 16)
    valid = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    n = c * (h * w)
    base = tf.range(c)[:, None, None] * (h * w)
    idx = tf.where(valid, base + tf.cast(yin * w + xin, tf.int32), n)     # n → fill row
    flat = tf.concat([tf.reshape(sub, [n, 3]), tf.reshape(tf.round(fill), [1, 3])], axis=0)
    return tf.reshape(tf.gather(flat, idx), tf.shape(sub))


def _blend_group(sub, code, levels, present):
    """Color / Sharpness on the samples ``sub``: Image.blend(degenerate, x, factor) with the
    luma image (Color) or PIL's SMOOTH-filtered image (Sharpness) as the degenerate. Computed
    on the [C, H, W·3] view (long contiguous rows vectorise; a trailing axis of 3 does not)."""
    c, h, w = sub.shape[0], sub.shape[1], sub.shape[2]
    color, sharp = _I["Color"], _I["Sharpness"]
    x = tf.reshape(sub, [c, h, w * 3])
    d = None
    if sharp in present:
        d = _smooth_rows(x, w)
    if color in present:
        luma = tf.cast(_luma(sub), tf.float32)
        luma = tf.reshape(tf.broadcast_to(luma[..., None], [c, h, w, 3]), [c, h, w * 3])
        d = luma if d is None else tf.where(tf.equal(code, color)[:, None, None], luma, d)
    return tf.reshape(_blend(d, x, levels[:, None, None]), tf.shape(sub))


def _smooth_rows(x, w):
    """PIL ``filter(SMOOTH)`` on the [C, H, W·3] view: 3×3 [[1,1,1],[1,5,1],[1,1,1]]/13,
    rounded; border pixels kept. The interior sum is 9 shifted slices + 4·centre (a column
    shift is 3 elements); integer sums are exact in float32 and S/13 is never a tie."""
    h = x.shape[1]
    if h < 3 or w < 3:
        return x
    s = 4.0 * x[:, 1:h - 1, 3:3 * (w - 1)]
    for dy in range(3):
        for dx in range(3):
            s = s + x[:, dy:h - 2 + dy, 3 * dx:3 * (w - 2 + dx)]
    smooth = tf.pad(tf.floor(s / 13.0 + 0.5), [[0, 0], [1, 1], [3, 3]])
    inside = np.zeros((h, 3 * w), bool)
    inside[1:h - 1, 3:3 * (w - 1)] = True
    return tf.where(tf.constant(inside)[None], smooth, x)


# AutoContrast: Python computes lut[i] = int(i·scale + offset), scale = 255/(hi − lo),
# offset = −lo·scale, in float64 with two roundings. The products k·scale_d (d = hi − lo) come
# from this table, so the add cannot be contracted into an FMA by any compiler.
_AC_PRODUCTS = np.arange(256, dtype=np.float64)[None, :] * (
    255.0 / np.maximum(np.arange(256, dtype=np.float64), 1.0))[:, None]    # [d, k]


def _autocontrast_lut_exact(lo, hi):
    """PIL's autocontrast (cutoff 0) LUT from int32 ``lo``/``hi`` [R] → int32 [R, 256]."""
    d = tf.maximum(hi - lo, 1)
    prod = tf.gather(tf.constant(_AC_PRODUCTS), d)                         # [R, 256] float64
    offset = -tf.gather(prod, lo[:, None], batch_dims=1)                   # −lo·scale, exact
    lut = tf.clip_by_value(tf.cast(prod + offset, tf.int32), 0, 255)      # cast truncates
    return tf.where((hi > lo)[:, None], lut, tf.range(256)[None, :])


def _static_lut_table() -> np.ndarray:
    """int32 [NUM_OPS + 1, 10, 256]: Brightness's LUT per level (``Image.blend(black, x, f)`` =
    float32 ``f·x``, clipped, truncated — PIL's own float32 product), identity for every other
    op."""
    i = np.arange(256)
    t = np.tile(i.astype(np.int32), (NUM_OPS + 1, NUM_LEVELS, 1))
    for L in range(NUM_LEVELS):
        t[_I["Brightness"], L] = np.floor(np.clip(_BLEND_PRODUCTS[L, 255 + i], 0, 255))
    return t


_STATIC_LUTS = _static_lut_table()


def _lut_rows(sub, ids, code, levels, hist, present):
    """int32 [C·3, 256]: the LUT of every sample-channel of the chunk ``sub`` for Brightness,
    Contrast, Equalize, AutoContrast (identity for every other op)."""
    c, h, w = sub.shape[0], sub.shape[1], sub.shape[2]
    lut = tf.gather_nd(tf.constant(_STATIC_LUTS), tf.stack([code, levels], axis=1))  # [C, 256]
    if _I["Contrast"] in present:
        # blend with the flat grey int(mean luma + 0.5), per sample
        grey = _mean_luma(sub)[:, None]
        i = tf.range(256, dtype=tf.float32)[None, :]
        lut = tf.where(tf.equal(code, _I["Contrast"])[:, None],
                       tf.cast(_blend(grey, i, levels[:, None]), tf.int32), lut)
    lut = tf.reshape(tf.broadcast_to(lut[:, None, :], [c, 3, 256]), [c * 3, 256])
    code3 = tf.repeat(code, 3)
    if hist is not None:
        hist = tf.reshape(tf.gather(hist, ids), [c * 3, 256])
        if _I["Equalize"] in present:
            lut = tf.where(tf.equal(code3, _I["Equalize"])[:, None],
                           _equalize_lut_from_hist(hist, h * w), lut)
        if _I["AutoContrast"] in present:
            i = tf.range(256)[None, :]
            lo = tf.reduce_min(tf.where(hist > 0, i, 255), axis=1)    # empty rows (other ops):
            hi = tf.reduce_max(tf.where(hist > 0, i, 0), axis=1)       # any in-range value
            lut = tf.where(tf.equal(code3, _I["AutoContrast"])[:, None],
                           _autocontrast_lut_exact(lo, hi), lut)
    return lut


def _lut_group(sub, ids, lutbuf, code, levels, hist, present):
    """The chunk's LUTs are written into the loop-carried ``lutbuf`` [B, 768] first and the
    pixels then gathered from it: otherwise XLA fuses the LUT computation into the per-pixel
    gather and redoes it for every pixel."""
    c = sub.shape[0]
    rows = tf.cast(tf.reshape(_lut_rows(sub, ids, tf.gather(code, ids), tf.gather(levels, ids),
                                        hist, present), [c, 768]), tf.float32)
    lutbuf = tf.tensor_scatter_nd_update(lutbuf, ids[:, None], rows)
    offs = (ids[:, None, None, None] * 3 + tf.range(3)[None, None, None, :]) * 256
    return tf.gather(tf.reshape(lutbuf, [-1]), offs + _to_int(sub)), lutbuf


def _arith(x, code, levels, rows, cols, fill, present):
    """Invert, Posterize, Solarize and Cutout as one elementwise integer pass over the whole
    batch, flattened to [B, H·W·3] (a long innermost dimension vectorises; [.., 3] does not),
    with per-sample parameters (identity for every other op)."""
    h, w = x.shape[1], x.shape[2]
    x = _as_uint8_values(tf.reshape(x, [-1, h * w * 3]))
    ids = tf.stack([code, levels], axis=1)
    if present & {_I["Invert"], _I["Posterize"], _I["Solarize"]}:
        vals = {}
        if _I["Invert"] in present:
            vals[_I["Invert"]] = [0] * NUM_LEVELS
        if _I["Solarize"] in present:
            vals[_I["Solarize"]] = list(SOLARIZE_THRESHOLD)
        v = _to_int(x)
        if vals:
            thr = tf.gather_nd(tf.constant(_per_op(vals, 256, tf.int32)), ids)
            v = tf.where(v >= thr[:, None], 255 - v, v)
        if _I["Posterize"] in present:
            masks = [256 - (1 << (8 - b)) for b in POSTERIZE_BITS]
            m = tf.gather_nd(tf.constant(_per_op({_I["Posterize"]: masks}, 255, tf.int32)), ids)
            v = tf.bitwise.bitwise_and(v, m[:, None])
        x = tf.cast(v, tf.float32)
    if _I["Cutout"] in present:
        half = tf.gather_nd(tf.constant(_per_op({_I["Cutout"]: [s // 2 for s in CUTOUT_SIZE]},
                                                0, tf.int32)), ids)[:, None]
        pix = np.arange(h * w * 3) // 3
        r = tf.constant((pix // w).astype(np.int32))[None, :]
        c = tf.constant((pix % w).astype(np.int32))[None, :]
        rows, cols = rows[:, None], cols[:, None]
        box = (r >= rows - half) & (r < rows + half) & (c >= cols - half) & (c < cols + half)
        value = tf.tile(tf.round(fill), [h * w])[None, :]
        x = tf.where(box, value, x)
    return x


def _batch_size(x):
    """Static batch size when known (XLA needs the bincount length at compile time)."""
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def _histograms(images, code, present):
    """int32 [B, 768]: per-channel histograms (``channel·256 + value``) of the samples whose op
    is Equalize or AutoContrast (zeros elsewhere), computed on those samples only and outside
    XLA (a scatter-add is serial and slow under XLA:CPU). None when neither op can occur."""
    ids = present & HIST_OPS
    if not ids:
        return None
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    want = _member(code, ids)

    def build():
        idx = tf.cast(tf.where(want), tf.int32)                             # [k, 1]
        sub = tf.reshape(_to_int(_as_uint8_values(tf.gather_nd(images, idx))), [-1, h * w * 3])
        ids = sub + tf.constant(np.tile(np.array([0, 256, 512], np.int32), h * w))[None, :]
        hist = tf.math.bincount(ids, minlength=768, maxlength=768, axis=-1, dtype=tf.int32)
        return tf.scatter_nd(idx, hist, tf.stack([b, 768]))

    if present == ids and len(ids) == 1:
        return build()
    return tf.cond(tf.reduce_any(want), build, lambda: tf.zeros(tf.stack([b, 768]), tf.int32))


def _kernel(images, code, levels, neg, rows, cols, hist, fill, present):
    """All groups on float32 images; ``code`` int32 [B] (NONE = untouched), ``neg`` int32
    [B] (1: negative warp), ``rows``/``cols`` int32 [B] Cutout centres, ``hist`` int32
    [B, 768] Equalize / AutoContrast histograms (or None)."""
    # The whole-batch pass first: it rounds / clips every sample (the uint8 image PIL would
    # get) into a new buffer, which the group loops then update in place (no input copy).
    if present & ARITH_OPS:
        flat = _arith(images, code, levels, rows, cols, fill, present)
    else:
        flat = _as_uint8_values(tf.reshape(images, [-1, images.shape[1] * images.shape[2] * 3]))
    x = tf.reshape(flat, tf.shape(images))
    x.set_shape(images.shape)
    groups = (
        (WARP_OPS, lambda sub, ids: _warp(sub, tf.gather(code, ids), tf.gather(levels, ids),
                                          tf.gather(neg, ids), fill)),
        (BLEND_OPS, lambda sub, ids: _blend_group(sub, tf.gather(code, ids),
                                                  tf.gather(levels, ids), present)),
        (LUT_OPS, lambda sub, ids, buf: _lut_group(sub, ids, buf, code, levels, hist,
                                                   present)),
    )
    for op_ids, fn in groups:
        if present & op_ids:
            aux = (tf.zeros([_batch_size(x), 768], tf.float32) if op_ids is LUT_OPS else None)
            x = _compacted(x, _member(code, present & op_ids), fn, CHUNK, aux)
            x.set_shape(images.shape)
    return x


# XLA fuses the kernel's elementwise work into a few vectorised loops (measured several times
# faster than the same graph as plain TF kernels on this CPU, see benchmarks/results/augment.md);
# the random draws and Equalize's histograms stay outside the compiled function (plain TF kernels).
_COMPILED: dict = {}


def _compiled_kernel(present, with_hist):
    key = (present, with_hist)
    if key not in _COMPILED:
        if with_hist:
            fn = (lambda images, code, levels, neg, rows, cols, hist, fill: _kernel(
                images, code, levels, neg, rows, cols, hist, fill, present))
        else:
            fn = (lambda images, code, levels, neg, rows, cols, fill: _kernel(
                images, code, levels, neg, rows, cols, None, fill, present))
        _COMPILED[key] = tf.function(fn, jit_compile=True, reduce_retracing=False,
                                       autograph=False)
    return _COMPILED[key]


def apply_fused(images, op_index, levels, mask, *, fill, seed, present=ALL_OPS):
    """Apply op ``op_index[i]`` (int32 [B]) at ``levels[i]`` to every sample with ``mask[i]``
    (out-of-range indices: untouched) in one pass of the kernel above.

    ``present``: the static set of op indices that may occur (code of other ops is not
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
    hist = _histograms(images, code, present)
    if hist is None:
        return _compiled_kernel(present, False)(images, code, levels, neg, rows, cols, fill)
    return _compiled_kernel(present, True)(images, code, levels, neg, rows, cols, hist,
                                           fill)


def _equalize_lut_from_hist(hist, n):
    """PIL's equalize LUT from int32 histograms [R, 256] of n pixels each → int32 [R, 256]."""
    idx = tf.range(256)[None, :]
    last = tf.reduce_max(tf.where(hist > 0, idx, -1), axis=1)            # last non-zero bin
    h_last = tf.gather(hist, tf.maximum(last, 0), batch_dims=1)
    step = (n - h_last) // 255                                            # [R]
    safe = tf.maximum(step, 1)[:, None]
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    # (step//2 + cum) // step, as a float64 division: exact for these small non-negative
    # integers (< 2**52), and vectorised (XLA's integer division is a scalar select chain).
    num = tf.cast(safe // 2 + cum, tf.float64)
    lut = tf.cast(tf.floor(num / tf.cast(safe, tf.float64)), tf.int32)
    return tf.where(step[:, None] > 0, tf.minimum(lut, 255), idx)


def _mean_luma(images):
    """ImageEnhance.Contrast's grey level: int(mean(luma) + 0.5), float32 [B]."""
    y = _luma(images)
    total = tf.reduce_sum(y, axis=[1, 2])                 # exact in int32 (< 2**31 / 255 px)
    n = tf.shape(y)[1] * tf.shape(y)[2]
    # floor(total/n + 0.5) exactly; Python's float division cannot cross the .5 boundary
    # (total/n is ≥ 1/(2n) away from it, far above a double's rounding error).
    return tf.cast((2 * total + n) // (2 * n), tf.float32)


# ----------------------------------------------------------------------------- the 15 ops
#: What each op does (PIL call and its parameter at level L), the docstring of its function.
_OP_DOCS = {
    "Rotate": "PIL ``rotate(±3L°)`` about the centre, nearest, exposed pixels = mean colour.",
    "TranslateX": "PIL affine (1, 0, ±L, 0, 1, 0).",
    "TranslateY": "PIL affine (1, 0, 0, 0, 1, ±L).",
    "ShearX": "PIL affine (1, ±0.03L, 0, 0, 1, 0) (about the top-left corner, as PBA).",
    "ShearY": "PIL affine (1, 0, 0, ±0.03L, 1, 0).",
    "Brightness": "ImageEnhance.Brightness(0.1+0.18L): blend with black.",
    "Color": "ImageEnhance.Color(0.1+0.18L): blend with the luma image.",
    "Contrast": "ImageEnhance.Contrast(0.1+0.18L): blend with the flat grey int(mean luma + 0.5).",
    "Sharpness": "ImageEnhance.Sharpness(0.1+0.18L): blend with PIL's SMOOTH-filtered image.",
    "Invert": "ImageOps.invert: 255 − x.",
    "Posterize": "ImageOps.posterize(4 − int(4L/10)): keep the top bits.",
    "Solarize": "ImageOps.solarize(256 − int(25.6L)): invert pixels ≥ threshold.",
    "Equalize": ("ImageOps.equalize per channel (PIL's LUT: step = (N − h[last])//255, lut[i] = "
                 "(step//2 + Σ_{j<i} h[j]) // step; identity when step = 0)."),
    "AutoContrast": "ImageOps.autocontrast (cutoff 0) per channel: lut[i] = clip(int(i·scale − lo·scale)).",
    "Cutout": "Square of side 2L (clipped at the border) at a uniform centre, set to the mean colour.",
}


def _single_op(name: str):
    """Op ``name`` as ``fn(images, levels, mask, *, fill, seed) -> images``: the fused kernel
    with only that op present (so tests/augment/test_ops.py checks the production path)."""
    k = _I[name]

    def fn(images, levels, mask, *, fill, seed):
        images = tf.convert_to_tensor(images)
        b = tf.shape(images)[0]
        return apply_fused(images, tf.fill([b], k), levels, mask, fill=fill, seed=seed,
                           present={k})
    fn.__name__ = fn.__qualname__ = f"op_{name}"
    fn.__doc__ = _OP_DOCS[name]
    return fn


OP_BY_NAME = {name: _single_op(name) for name in OP_NAMES}
OPS = tuple(OP_BY_NAME[name] for name in OP_NAMES)  # OPS[k] applies op k of a policy


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
