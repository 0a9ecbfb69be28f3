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
  (op, sign, level) once per image size, and each output pixel gathers input ``(xx >> 16, yy >> 16)``
  (one batched ``tf.gather``; ``ImageProjectiveTransformV3`` was tried first and disagreed with
  PIL on ~0.3 % of rotated and ~1.6 % of ShearX/Y-level-4 pixels — float32 ``round`` vs PIL's
  fixed-point ``floor`` — at about the same speed).
* enhancers: ``out = floor(clip(d + f·(x − d), 0, 255))`` in float32 (``Image.blend``), with
  PIL's degenerate images (black; ITU-R 601 luma ``(19595R+38470G+7471B+2¹⁵)>>16`` — PIL's
  fixed-point form of 299/587/114 ‰; the luma mean ``int(mean+0.5)``; SMOOTH = 3×3
  ``[[1,1,1],[1,5,1],[1,1,1]]/13`` rounded, border pixels kept).
* Equalize / AutoContrast: PIL's ``ImageOps`` LUT algorithms per channel (AutoContrast's LUT is
  computed in float64 like Python does, so ``int()`` truncation matches exactly).
"""
from __future__ import annotations

import math

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


def _finish(images, out, mask):
    """uint8 round trip + leave unmasked samples untouched."""
    out = tf.round(tf.clip_by_value(out, 0.0, 255.0))
    return tf.where(mask[:, None, None, None], out, images)


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


def warp_fixed(images, coeffs, fill):
    """Nearest-neighbour affine warp with PIL's exact index arithmetic.

    ``coeffs`` int64 ``[B, 6]`` fixed-point coefficients (see ``_pil_fixed_coeffs``); output
    pixel (x, y) reads input (xx >> 16, yy >> 16) with xx = A2 + y·A1 + x·A0, yy = A5 + y·A4 +
    x·A3, or ``fill`` when that is outside the image. Implemented as one batched gather.
    """
    s = tf.shape(images)
    b, h, w = s[0], s[1], s[2]
    y = tf.range(h, dtype=tf.int64)[None, :, None]
    x = tf.range(w, dtype=tf.int64)[None, None, :]
    a = [coeffs[:, k][:, None, None] for k in range(6)]
    xin = tf.bitwise.right_shift(a[2] + y * a[1] + x * a[0], 16)    # arithmetic shift = floor
    yin = tf.bitwise.right_shift(a[5] + y * a[4] + x * a[3], 16)
    h64, w64 = tf.cast(h, tf.int64), tf.cast(w, tf.int64)
    valid = (xin >= 0) & (xin < w64) & (yin >= 0) & (yin < h64)
    idx = tf.cast(tf.where(valid, yin * w64 + xin, h64 * w64), tf.int32)
    flat = tf.concat([tf.reshape(images, [b, h * w, 3]),
                      tf.broadcast_to(tf.reshape(fill, [1, 1, 3]), [b, 1, 3])], axis=1)
    out = tf.gather(flat, tf.reshape(idx, [b, h * w]), batch_dims=1)
    return tf.reshape(out, s)


def _blend(degenerate, images, factor):
    """PIL ``Image.blend(degenerate, image, factor)`` on uint8: float32 math, clip, truncate."""
    out = degenerate + factor[:, None, None, None] * (images - degenerate)
    return tf.floor(tf.clip_by_value(out, 0.0, 255.0))


def _luma(images):
    """PIL ``convert('L')``: (19595·R + 38470·G + 7471·B + 32768) >> 16, int32 [B,H,W]."""
    x = _to_int(images)
    y = x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 32768
    return tf.bitwise.right_shift(y, 16)


def _channel_rows(images):
    """[B,H,W,3] → int32 [B*3, H*W] (one row per sample-channel)."""
    x = _to_int(images)
    s = tf.shape(x)
    x = tf.transpose(x, [0, 3, 1, 2])
    return tf.reshape(x, [s[0] * 3, s[1] * s[2]]), s


def _from_channel_rows(rows, s):
    x = tf.reshape(rows, [s[0], 3, s[1], s[2]])
    return tf.cast(tf.transpose(x, [0, 2, 3, 1]), tf.float32)


def _apply_lut(images, lut):
    """``lut`` int32 [B*3, 256] applied per sample-channel."""
    rows, s = _channel_rows(images)
    return _from_channel_rows(tf.gather(lut, rows, batch_dims=1), s)


# ----------------------------------------------------------------------------- warps
_WARP_TABLES: dict = {}


def _warp_op(op, images, levels, mask, fill, seed):
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    h, w = images.shape[1], images.shape[2]
    if h is None or w is None:
        raise ValueError(f"{op}: image height/width must be static, got shape {images.shape}")
    key = (op, int(w), int(h))
    if key not in _WARP_TABLES:
        _WARP_TABLES[key] = _warp_table(op, int(w), int(h))
    table = tf.constant(_WARP_TABLES[key])
    neg = tf.cast(random_signs(seed, tf.shape(levels)[0]) < 0, tf.int32)  # 0: +1, 1: −1
    coeffs = tf.gather_nd(table, tf.stack([neg, levels], axis=1))       # [B, 6] int64
    return _finish(images, warp_fixed(images, coeffs, tf.round(fill)), mask)


def rotate(images, levels, mask, *, fill, seed):
    """PIL ``rotate(±3L°)`` about the centre, nearest, exposed pixels = mean colour."""
    return _warp_op("Rotate", images, levels, mask, fill, seed)


def translate_x(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, ±L, 0, 1, 0)."""
    return _warp_op("TranslateX", images, levels, mask, fill, seed)


def translate_y(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, 0, 0, 1, ±L)."""
    return _warp_op("TranslateY", images, levels, mask, fill, seed)


def shear_x(images, levels, mask, *, fill, seed):
    """PIL affine (1, ±0.03L, 0, 0, 1, 0) (about the top-left corner, as PBA)."""
    return _warp_op("ShearX", images, levels, mask, fill, seed)


def shear_y(images, levels, mask, *, fill, seed):
    """PIL affine (1, 0, 0, ±0.03L, 1, 0)."""
    return _warp_op("ShearY", images, levels, mask, fill, seed)


# ----------------------------------------------------------------------------- enhancers
def _factor(levels):
    # PIL receives a Python float and blends with a C float: cast the double to float32.
    return _table(np.asarray(ENHANCE_FACTOR, np.float64).astype(np.float32), levels)


def brightness(images, levels, mask, *, fill, seed):
    """ImageEnhance.Brightness(0.1+0.18L): blend with black."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    return _finish(images, _blend(tf.zeros_like(images), images, _factor(levels)), mask)


def color(images, levels, mask, *, fill, seed):
    """ImageEnhance.Color(0.1+0.18L): blend with the luma image."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    gray = tf.cast(_luma(images), tf.float32)[..., None]
    degenerate = tf.broadcast_to(gray, tf.shape(images))
    return _finish(images, _blend(degenerate, images, _factor(levels)), mask)


def contrast(images, levels, mask, *, fill, seed):
    """ImageEnhance.Contrast(0.1+0.18L): blend with the flat grey int(mean luma + 0.5)."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    degenerate = tf.zeros_like(images) + _mean_luma(images)[:, None, None, None]
    return _finish(images, _blend(degenerate, images, _factor(levels)), mask)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32)


def sharpness(images, levels, mask, *, fill, seed):
    """ImageEnhance.Sharpness(0.1+0.18L): blend with PIL's SMOOTH-filtered image."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    return _finish(images, _blend(_smooth_degenerate(images), images, _factor(levels)), mask)


# ----------------------------------------------------------------------------- pixel LUT ops
def invert(images, levels, mask, *, fill, seed):
    """ImageOps.invert: 255 − x."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    return _finish(images, 255.0 - images, mask)


def posterize(images, levels, mask, *, fill, seed):
    """ImageOps.posterize(4 − int(4L/10)): keep the top bits."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    bits = _table(POSTERIZE_BITS, levels, tf.int32)
    keep = 256 - tf.bitwise.left_shift(tf.ones_like(bits), 8 - bits)  # ~(2**(8-bits) − 1) & 255
    out = tf.bitwise.bitwise_and(_to_int(images), keep[:, None, None, None])
    return _finish(images, tf.cast(out, tf.float32), mask)


def solarize(images, levels, mask, *, fill, seed):
    """ImageOps.solarize(256 − int(25.6L)): invert pixels ≥ threshold."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    th = _table(SOLARIZE_THRESHOLD, levels)[:, None, None, None]
    return _finish(images, tf.where(images >= th, 255.0 - images, images), mask)


def _equalize_lut(rows, n):
    """PIL's equalize LUT per row of ``rows`` (int32 [R, n] pixel values) → int32 [R, 256]."""
    hist = tf.cast(tf.math.bincount(rows, minlength=256, maxlength=256, axis=-1), tf.int32)
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
    total = tf.reduce_sum(tf.cast(y, tf.float64), axis=[1, 2])
    n = tf.cast(tf.shape(y)[1] * tf.shape(y)[2], tf.float64)
    return tf.cast(tf.floor(total / n + 0.5), tf.float32)


def _smooth_degenerate(images):
    """PIL ``filter(SMOOTH)``: 3×3 [[1,1,1],[1,5,1],[1,1,1]]/13, rounded; border kept."""
    kernel = tf.constant(np.tile(_SMOOTH[:, :, None, None], [1, 1, 3, 1]))
    # Integer weighted sums are exact in float32 (< 2**24); S/13 is never a tie → round.
    s = tf.nn.depthwise_conv2d(images, kernel, strides=[1, 1, 1, 1], padding="SAME")
    smooth = tf.floor(s / 13.0 + 0.5)
    h, w = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    interior = (rows > 0) & (rows < h - 1) & (cols > 0) & (cols < w - 1)
    return tf.where(interior[None, :, :, None], smooth, images)


def equalize(images, levels, mask, *, fill, seed):
    """ImageOps.equalize per channel (PIL's LUT: step = (N − h[last])//255, lut[i] =
    (step//2 + Σ_{j<i} h[j]) // step; identity when step = 0)."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    rows, s = _channel_rows(images)
    lut = _equalize_lut(rows, s[1] * s[2])
    out = _from_channel_rows(tf.gather(lut, rows, batch_dims=1), s)
    return _finish(images, out, mask)


def autocontrast(images, levels, mask, *, fill, seed):
    """ImageOps.autocontrast (cutoff 0) per channel: lut[i] = clip(int(i·scale − lo·scale))."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    return _finish(images, _apply_lut(images, _autocontrast_lut(images)), mask)


def cutout(images, levels, mask, *, fill, seed):
    """Square of side 2L (clipped at the border) at a uniform centre, set to the mean colour."""
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    b, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    half = _table(CUTOUT_SIZE, levels, tf.int32) // 2
    r, c = cutout_centres(seed, b, h, w)
    return _finish(images, paint_squares(images, r, c, half, tf.round(fill)), mask)


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
def apply_op_by_index(images, op_index, levels, mask, *, fill, seed, method="partition"):
    """Apply op ``op_index`` (scalar, or int32 ``[B]`` — one op per sample) at ``levels``.

    ``method`` (for ``[B]`` op indices; a scalar ``op_index`` always uses ``tf.switch_case``):

    * ``"partition"`` (default, fastest measured): ``tf.dynamic_partition`` the batch by op, run
      each op on its own samples only, ``tf.dynamic_stitch`` back — ~1 op of work per sample;
    * ``"dense"``: run all 15 ops on the whole batch, each masked to its samples (~10× slower;
      kept as a reference). Random draws differ between the two methods (per partition vs
      over the whole batch).
    """
    images, levels, mask, fill = _prep(images, levels, mask, fill)
    op_index = tf.cast(tf.convert_to_tensor(op_index), tf.int32)
    seed = tf.convert_to_tensor(seed)
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
    if method != "partition":
        raise ValueError(f"method={method!r}: expected 'partition' or 'dense'")

    # Partition NUM_OPS holds the untouched samples (mask False or op index out of range).
    valid = mask & (op_index >= 0) & (op_index < NUM_OPS)
    part = tf.where(valid, op_index, NUM_OPS)
    b = tf.shape(images)[0]
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
