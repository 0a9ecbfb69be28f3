"""Per-image PIL reference of the PBA search space (docs/METHOD.md §1) — the test oracle.

Written the way PBA applies its policies: one ``PIL.Image`` per sample, PIL's own operators,
Python ``random``-style control flow. Differences from PBA's code, on purpose:

* images are RGB with the exposed-pixel colour passed as ``fillcolor`` (PBA converts to RGBA
  and later replaces fully transparent pixels by the mean); the result is the same up to the
  uint8 rounding of the mean colour;
* random choices (sign of a warp, Cutout centre, the cap, the shuffle, the coin flips) are
  explicit arguments or come from a ``numpy.random.Generator`` so tests can pin them.

Also used by ``benchmarks/augment.py`` as the "straightforward per-image" baseline.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OP_NAMES = (
    "Rotate", "TranslateX", "TranslateY", "Brightness", "Color", "Invert", "Sharpness",
    "Posterize", "ShearX", "Solarize", "ShearY", "Equalize", "AutoContrast", "Cutout",
    "Contrast",
)
SIGNED_OPS = {"Rotate", "TranslateX", "TranslateY", "ShearX", "ShearY"}
PARAMETER_MAX = 10


def int_parameter(level, maxval):
    return int(level * maxval / PARAMETER_MAX)


def float_parameter(level, maxval):
    return float(level) * maxval / PARAMETER_MAX


def _fill_tuple(fill):
    return tuple(int(v) for v in np.round(np.asarray(fill, dtype=np.float64)))


def pil_op(name: str, img: np.ndarray, level: int, *, fill, sign: int = 1,
           centre: tuple[int, int] | None = None) -> np.ndarray:
    """Apply one op to one uint8 [H,W,3] image. ``sign`` ∈ {1,-1} for warps; ``centre`` = (row,
    col) of the Cutout square (drawn uniformly when None)."""
    im = Image.fromarray(np.asarray(img, dtype=np.uint8), "RGB")
    w, h = im.size
    fc = _fill_tuple(fill)
    if name == "Rotate":
        out = im.rotate(sign * int_parameter(level, 30), fillcolor=fc)
    elif name == "TranslateX":
        t = sign * int_parameter(level, 10)
        out = im.transform((w, h), Image.AFFINE, (1, 0, t, 0, 1, 0), fillcolor=fc)
    elif name == "TranslateY":
        t = sign * int_parameter(level, 10)
        out = im.transform((w, h), Image.AFFINE, (1, 0, 0, 0, 1, t), fillcolor=fc)
    elif name == "ShearX":
        c = sign * float_parameter(level, 0.3)
        out = im.transform((w, h), Image.AFFINE, (1, c, 0, 0, 1, 0), fillcolor=fc)
    elif name == "ShearY":
        c = sign * float_parameter(level, 0.3)
        out = im.transform((w, h), Image.AFFINE, (1, 0, 0, c, 1, 0), fillcolor=fc)
    elif name in ("Brightness", "Color", "Contrast", "Sharpness"):
        factor = float_parameter(level, 1.8) + 0.1
        out = getattr(ImageEnhance, name)(im).enhance(factor)
    elif name == "Invert":
        out = ImageOps.invert(im)
    elif name == "Posterize":
        out = ImageOps.posterize(im, 4 - int_parameter(level, 4))
    elif name == "Solarize":
        out = ImageOps.solarize(im, 256 - int_parameter(level, 256))
    elif name == "Equalize":
        out = ImageOps.equalize(im)
    elif name == "AutoContrast":
        out = ImageOps.autocontrast(im)
    elif name == "Cutout":
        size = int_parameter(level, 20)
        arr = np.array(im)
        if size > 0:
            if centre is None:
                centre = (np.random.randint(h), np.random.randint(w))
            r, c = centre
            arr[max(0, r - size // 2):min(h, r + size // 2),
                max(0, c - size // 2):min(w, c + size // 2)] = fc
        return arr
    else:
        raise KeyError(name)
    return np.array(out)


def policy_slots(policy):
    """60 ints → the 30 (op_name, probability, level) slots, in slot order (copy A then B)."""
    v = [int(x) for x in np.asarray(policy).reshape(-1)]
    assert len(v) == 60
    return [(OP_NAMES[s % 15], v[2 * s] / 10.0, v[2 * s + 1]) for s in range(30)]


def pil_apply_policy(img: np.ndarray, policy, *, fill, rng: np.random.Generator) -> np.ndarray:
    """PBA's per-image rule: cap ∈ {0,1,2} p=(.2,.3,.5); shuffle the 30 slots; walk them; a slot
    fires when U < p; stop after `cap` fired ops."""
    count = rng.choice(3, p=[0.2, 0.3, 0.5])
    if count == 0:
        return np.asarray(img, dtype=np.uint8).copy()
    slots = policy_slots(policy)
    order = rng.permutation(30)
    out = np.asarray(img, dtype=np.uint8)
    fired = 0
    for s in order:
        name, p, level = slots[s]
        if rng.random() < p:
            sign = -1 if rng.random() > 0.5 else 1
            centre = (int(rng.integers(out.shape[0])), int(rng.integers(out.shape[1])))
            out = pil_op(name, out, level, fill=fill, sign=sign, centre=centre)
            fired += 1
            if fired == count:
                break
    return out


def pil_baseline(img: np.ndarray, *, fill, rng: np.random.Generator, pad=4, flip=True,
                 cutout=16) -> np.ndarray:
    """Mean-pad + random crop (offsets 0..2·pad−1), flip p=.5, Cutout size×size (mean fill)."""
    x = np.asarray(img, dtype=np.float32)
    h, w, _ = x.shape
    f = np.asarray(fill, dtype=np.float32)
    if pad:
        p = np.empty((h + 2 * pad, w + 2 * pad, 3), np.float32)
        p[:] = f
        p[pad:pad + h, pad:pad + w] = x
        oy, ox = rng.integers(0, 2 * pad, size=2)
        x = p[oy:oy + h, ox:ox + w]
    if flip and rng.random() < 0.5:
        x = x[:, ::-1]
    if cutout:
        r, c = rng.integers(h), rng.integers(w)
        x = x.copy()
        x[max(0, r - cutout // 2):min(h, r + cutout // 2),
          max(0, c - cutout // 2):min(w, c + cutout // 2)] = f
    return x


def read_tar_images(path, n: int = 48) -> np.ndarray:
    """The first ``n`` JPEGs of a ``.tar(.gz)`` image archive, as uint8 [n, H, W, 3] (tests only;
    independent of ``rolekd_tf.data``)."""
    import io
    import tarfile

    out = []
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png")):
                data = tar.extractfile(member).read()
                out.append(np.array(Image.open(io.BytesIO(data)).convert("RGB")))
                if len(out) >= n:
                    break
    return np.stack(out)


# ----------------------------------------------------------------------------- PBA's own path
# What PBA's data loader really does per image (arcelien/pba ``augmentation_transforms_hp`` +
# ``data_utils.DataSet.next_batch``), used by benchmarks/augment.py as the "PBA per image" side.
# It is a faithful cost model, not a bit-exact oracle for the TF ops (PBA works on RGBA and marks
# exposed / cut-out pixels transparent, then zeroes them after normalising):
#   * images are held normalised (float); ``pba_pil_wrap`` de-normalises, truncates to uint8 and
#     converts to an RGBA ``PIL.Image``; ``pba_pil_unwrap`` reads it back with
#     ``np.array(img.getdata())`` (PBA's call), divides by 255, normalises and zeroes fully
#     transparent pixels;
#   * the cap is ``np.random.choice([0,1,2,3], p=[.2,.3,.5,0])``; count 0 returns the input
#     without any conversion; the 30 slots are shuffled with ``random.shuffle`` and each slot's
#     coin is ``random.random() < p``; the warps draw their sign with ``random.random() > 0.5``;
#   * the ImageOps ops go through ``convert('RGB')`` … ``convert('RGBA')`` as in PBA; rotate /
#     transform get no fill colour (transparent); Cutout writes its square pixel by pixel through
#     ``img.load()`` (PBA's double Python loop) with the centre from ``np.random.randint``.
def pba_pil_wrap(img, mean, std):
    return Image.fromarray(np.uint8((img * std + mean) * 255.0)).convert("RGBA")


def pba_pil_unwrap(pil_img, mean, std):
    w, h = pil_img.size
    pic = np.array(pil_img.getdata()).reshape((h, w, 4)) / 255.0
    i1, i2 = np.where(pic[:, :, 3] == 0)
    pic = (pic[:, :, :3] - mean) / std
    pic[i1, i2] = [0, 0, 0]
    return pic


def _pba_xform(name, im, level, pyrandom):
    w, h = im.size
    if name == "Rotate":
        d = int_parameter(level, 30)
        return im.rotate(-d if pyrandom.random() > 0.5 else d)
    if name in ("TranslateX", "TranslateY", "ShearX", "ShearY"):
        v = (int_parameter(level, 10) if name.startswith("Translate")
             else float_parameter(level, 0.3))
        if pyrandom.random() > 0.5:
            v = -v
        data = {"TranslateX": (1, 0, v, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, v),
                "ShearX": (1, v, 0, 0, 1, 0), "ShearY": (1, 0, 0, v, 1, 0)}[name]
        return im.transform((w, h), Image.AFFINE, data)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, name)(im).enhance(float_parameter(level, 1.8) + 0.1)
    if name == "Invert":
        return ImageOps.invert(im.convert("RGB")).convert("RGBA")
    if name == "Posterize":
        return ImageOps.posterize(im.convert("RGB"), 4 - int_parameter(level, 4)).convert("RGBA")
    if name == "Solarize":
        return ImageOps.solarize(im.convert("RGB"), 256 - int_parameter(level, 256)).convert("RGBA")
    if name == "Equalize":
        return ImageOps.equalize(im.convert("RGB")).convert("RGBA")
    if name == "AutoContrast":
        return ImageOps.autocontrast(im.convert("RGB")).convert("RGBA")
    if name == "Cutout":
        size = int_parameter(level, 20)
        if size <= 0:
            return im
        r, c = np.random.randint(low=0, high=h), np.random.randint(low=0, high=w)
        pixels = im.load()
        for i in range(max(0, r - size // 2), min(h, r + size // 2)):
            for j in range(max(0, c - size // 2), min(w, c + size // 2)):
                pixels[j, i] = (125, 122, 113, 0)
        return im
    raise KeyError(name)


def pba_apply_policy(img, policy, *, mean, std, pyrandom):
    """PBA's ``apply_policy`` on one normalised float image [H,W,3] (see the block comment)."""
    count = np.random.choice([0, 1, 2, 3], p=[0.2, 0.3, 0.5, 0.0])
    if count == 0:
        return img
    pil_img = pba_pil_wrap(img, mean, std)
    slots = policy_slots(policy)
    pyrandom.shuffle(slots)
    for name, p, level in slots:
        if pyrandom.random() < p:
            pil_img = _pba_xform(name, pil_img, level, pyrandom)
            count -= 1
            if count == 0:
                break
    return pba_pil_unwrap(pil_img, mean, std)


def pba_baseline(img, pad=4, cutout=16):
    """PBA's ``zero_pad_and_crop`` + ``random_flip`` + ``cutout_numpy`` on a normalised image."""
    h, w, ch = img.shape
    padded = np.zeros((h + 2 * pad, w + 2 * pad, ch))
    padded[pad:h + pad, pad:w + pad, :] = img
    top, left = np.random.randint(low=0, high=2 * pad), np.random.randint(low=0, high=2 * pad)
    img = padded[top:top + h, left:left + w, :]
    if np.random.rand(1)[0] > 0.5:
        img = np.fliplr(img)
    r, c = np.random.randint(low=0, high=h), np.random.randint(low=0, high=w)
    mask = np.ones((h, w, ch))
    mask[max(0, r - cutout // 2):min(h, r + cutout // 2),
         max(0, c - cutout // 2):min(w, c + cutout // 2), :] = np.zeros(
        (min(h, r + cutout // 2) - max(0, r - cutout // 2),
         min(w, c + cutout // 2) - max(0, c - cutout // 2), ch))
    return img * mask
