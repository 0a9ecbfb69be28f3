"""Image decoding is exact or refused: every mode / bit depth Pillow opens from a file.

For each case the raw samples are generated here with NumPy, written to a file, and the
expected 8-bit RGB is computed from those raw samples with NumPy (the definitions in
``rolekd_tf.data.imagefolder.to_rgb8`` — never through the Pillow call the loader makes).
PNG files of 2/4/16-bit depth are assembled byte by byte, so the samples are known exactly.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rolekd_tf.data import imagefolder as imf
from rolekd_tf.data import load_full
from rolekd_tf.errors import DataError

H, W = 5, 7
RNG = np.random.default_rng(18)


def _png(path: Path, samples: np.ndarray, bit_depth: int, color_type: int) -> Path:
    """A PNG written by hand: ``samples`` HxW[xC] (already in the file's bit depth)."""
    h, w = samples.shape[:2]
    if bit_depth == 16:
        rows = [samples[r].astype(">u2").tobytes() for r in range(h)]
    elif bit_depth == 8:
        rows = [samples[r].astype(np.uint8).tobytes() for r in range(h)]
    else:  # 1/2/4-bit grey: pack big-endian within each byte
        per = 8 // bit_depth
        rows = []
        for r in range(h):
            v = list(samples[r]) + [0] * (-w % per)
            rows.append(bytes(sum(int(v[i + k]) << (8 - bit_depth * (k + 1)) for k in range(per))
                              for i in range(0, len(v), per)))
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def _grey3(v: np.ndarray) -> np.ndarray:
    return np.stack([v, v, v], axis=-1).astype(np.uint8)


def _u8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _palette():
    pal = _u8(256, 3)
    idx = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    return pal, idx


def _p_image(pal, idx, mode="P"):
    im = Image.frombytes("P", (W, H), idx.tobytes())
    im.putpalette(pal.reshape(-1).tolist())
    if mode == "PA":
        alpha = _u8(H, W)
        im = Image.merge("PA", (im, Image.frombytes("L", (W, H), alpha.tobytes())))
        im.putpalette(pal.reshape(-1).tolist())
    return im


# Every case returns (file, expected uint8 HxWx3) computed from the raw samples.
def case_1_png(d):
    bits = RNG.integers(0, 2, (H, W)).astype(bool)
    Image.fromarray(bits).save(d / "x.png")  # mode "1"
    return d / "x.png", _grey3(np.where(bits, 255, 0))


def case_1_bmp(d):
    bits = RNG.integers(0, 2, (H, W)).astype(bool)
    Image.fromarray(bits).save(d / "x.bmp")
    return d / "x.bmp", _grey3(np.where(bits, 255, 0))


def case_L_png(d):
    v = _u8(H, W)
    return _png(d / "x.png", v, 8, 0), _grey3(v)


def case_L_pgm(d):
    v = _u8(H, W)
    (d / "x.pgm").write_bytes(b"P5\n%d %d\n255\n" % (W, H) + v.tobytes())
    return d / "x.pgm", _grey3(v)


def case_L2_png(d):  # 2-bit grey: 0..3 → ×85
    v = RNG.integers(0, 4, (H, W))
    return _png(d / "x.png", v, 2, 0), _grey3(v * 85)


def case_L4_png(d):  # 4-bit grey: 0..15 → ×17
    v = RNG.integers(0, 16, (H, W))
    return _png(d / "x.png", v, 4, 0), _grey3(v * 17)


def case_LA_png(d):  # straight alpha: the stored grey is kept
    v = _u8(H, W, 2)
    return _png(d / "x.png", v, 8, 4), _grey3(v[..., 0])


def case_P_png(d):
    pal, idx = _palette()
    _p_image(pal, idx).save(d / "x.png")
    return d / "x.png", pal[idx]


def case_P_png_transparency(d):  # a transparent palette index keeps its stored colour
    pal, idx = _palette()
    _p_image(pal, idx).save(d / "x.png", transparency=int(idx[0, 0]))
    return d / "x.png", pal[idx]


def case_P_png_alpha_palette(d):  # tRNS with one alpha per palette entry
    pal, idx = _palette()
    _p_image(pal, idx).save(d / "x.png", transparency=bytes(_u8(256).tolist()))
    return d / "x.png", pal[idx]


def case_P_gif_transparency(d):
    pal, idx = _palette()
    _p_image(pal, idx).save(d / "x.gif", transparency=int(idx[0, 0]))
    return d / "x.gif", pal[idx]


def case_PA_tiff(d):
    pal, idx = _palette()
    _p_image(pal, idx, "PA").save(d / "x.tif")
    return d / "x.tif", pal[idx]


def case_RGB_png(d):
    v = _u8(H, W, 3)
    return _png(d / "x.png", v, 8, 2), v


def case_RGB_ppm(d):
    v = _u8(H, W, 3)
    (d / "x.ppm").write_bytes(b"P6\n%d %d\n255\n" % (W, H) + v.tobytes())
    return d / "x.ppm", v


def case_RGB_bmp(d):
    v = _u8(H, W, 3)
    Image.frombytes("RGB", (W, H), v.tobytes()).save(d / "x.bmp")
    return d / "x.bmp", v


def case_RGB_tiff(d):
    v = _u8(H, W, 3)
    Image.frombytes("RGB", (W, H), v.tobytes()).save(d / "x.tif")
    return d / "x.tif", v


def case_RGB_png_transparency(d):  # tRNS colour key: stored colours kept
    v = _u8(H, W, 3)
    Image.frombytes("RGB", (W, H), v.tobytes()).save(d / "x.png", transparency=tuple(int(c) for c in v[0, 0]))
    return d / "x.png", v


def case_RGBA_png(d):
    v = _u8(H, W, 4)
    return _png(d / "x.png", v, 8, 6), v[..., :3]


def case_RGBA_webp_lossless(d):
    v = _u8(H, W, 4)
    v[..., 3] = 255  # lossless WebP keeps RGB exactly only where alpha > 0
    Image.frombytes("RGBA", (W, H), v.tobytes()).save(d / "x.webp", lossless=True, exact=True)
    return d / "x.webp", v[..., :3]


def case_CMYK_tiff(d):
    c = _u8(H, W, 4).astype(np.int64)
    Image.frombytes("CMYK", (W, H), c.astype(np.uint8).tobytes()).save(d / "x.tif")
    exp = np.floor((255 - c[..., :3]) * (255 - c[..., 3:]) / 255 + 0.5)
    return d / "x.tif", exp.astype(np.uint8)


def case_YCbCr_tiff(d):
    ycc = _u8(H, W, 3).astype(np.float64)
    Image.frombytes("YCbCr", (W, H), ycc.astype(np.uint8).tobytes()).save(d / "x.tif")
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128, ycc[..., 2] - 128
    # JFIF (ITU-T T.871) full-range equations, rounded half up, clipped
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    exp = np.clip(np.floor(np.stack([r, g, b], -1) + 0.5), 0, 255)
    return d / "x.tif", exp.astype(np.uint8)


def case_I16_png(d):  # 16-bit grey PNG (mode I;16): high byte
    v = RNG.integers(0, 65536, (H, W))
    v[0, 0], v[0, 1] = 65535, 300  # old decoder clipped 300 → 255
    return _png(d / "x.png", v, 16, 0), _grey3(v >> 8)


def case_I16B_tiff(d):
    v = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    Image.frombytes("I;16B", (W, H), v.astype(">u2").tobytes()).save(d / "x.tif")
    return d / "x.tif", _grey3(v >> 8)


def case_I16L_tiff(d):
    v = RNG.integers(0, 65536, (H, W)).astype(np.uint16)
    Image.frombytes("I;16", (W, H), v.astype("<u2").tobytes()).save(d / "x.tif")
    return d / "x.tif", _grey3(v >> 8)


def _nearest8(v):  # PNM: the nearest 8-bit level, round(v·255/65535), half up
    return np.floor(v * 255 / 65535 + 0.5).astype(np.uint8)


def case_I16_pgm(d):  # 16-bit PGM (read as mode I)
    v = RNG.integers(0, 65536, (H, W))
    (d / "x.pgm").write_bytes(b"P5\n%d %d\n65535\n" % (W, H) + v.astype(">u2").tobytes())
    return d / "x.pgm", _grey3(_nearest8(v))


def case_I10_pgm(d):  # maxval 1023: Pillow stretches to 0..65535 first (round(v·65535/1023))
    v = RNG.integers(0, 1024, (H, W))
    (d / "x.pgm").write_bytes(b"P5\n%d %d\n1023\n" % (W, H) + v.astype(">u2").tobytes())
    return d / "x.pgm", _grey3(_nearest8(np.floor(v * 65535 / 1023 + 0.5)))


def case_RGB16_png(d):
    v = RNG.integers(0, 65536, (H, W, 3))
    return _png(d / "x.png", v, 16, 2), (v >> 8).astype(np.uint8)


def case_RGB16_ppm(d):
    v = RNG.integers(0, 65536, (H, W, 3))
    (d / "x.ppm").write_bytes(b"P6\n%d %d\n65535\n" % (W, H) + v.astype(">u2").tobytes())
    return d / "x.ppm", _nearest8(v)


def case_LA16_png(d):
    v = RNG.integers(0, 65536, (H, W, 2))
    return _png(d / "x.png", v, 16, 4), _grey3(v[..., 0] >> 8)


def case_RGBA16_png(d):
    v = RNG.integers(0, 65536, (H, W, 4))
    return _png(d / "x.png", v, 16, 6), (v[..., :3] >> 8).astype(np.uint8)


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mode_is_decoded_exactly(tmp_path, name):
    path, expected = CASES[name](tmp_path)
    got = imf._decode_one(path)
    assert got.dtype == np.uint8 and got.shape == (H, W, 3), (got.dtype, got.shape)
    bad = np.argwhere(got != expected)
    assert not len(bad), f"{name}: {len(bad)} samples differ, first at {bad[0]}: " \
                         f"{got[tuple(bad[0][:2])]} != {expected[tuple(bad[0][:2])]}"


def test_every_mode_through_the_loader(tmp_path):
    """All cases in one image folder (2 classes): load_full returns the references in order."""
    root = tmp_path / "ds" / "train"
    expected = []
    for k, name in enumerate(sorted(CASES)):
        cls = root / ("a" if k % 2 == 0 else "b")
        cls.mkdir(parents=True, exist_ok=True)
        src, exp = CASES[name](tmp_path)
        target = cls / f"{k:03d}{src.suffix}"
        src.rename(target)
        expected.append((target.parent.name, target.name, exp))
    x, y, info = load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    order = sorted(expected, key=lambda e: (e[0], e[1]))
    assert x.shape == (len(order), H, W, 3)
    for i, (_, fname, exp) in enumerate(order):
        assert (x[i] == exp).all(), fname


# -------------------------------------------------------------------------------- refused
def _refused_F(d):
    Image.frombytes("F", (W, H), RNG.random((H, W)).astype(np.float32).tobytes()).save(d / "x.tif")
    return d / "x.tif", "mode F"


def _refused_I32(d):
    v = RNG.integers(0, 2**20, (H, W)).astype(np.int32)
    Image.frombytes("I", (W, H), v.tobytes()).save(d / "x.tif")
    return d / "x.tif", "mode I"


def _refused_LAB(d):
    Image.frombytes("LAB", (W, H), _u8(H, W, 3).tobytes()).save(d / "x.tif")
    return d / "x.tif", "mode LAB"


def _refused_animation(d):
    frames = [Image.frombytes("L", (W, H), _u8(H, W).tobytes()) for _ in range(3)]
    frames[0].save(d / "x.gif", save_all=True, append_images=frames[1:])
    return d / "x.gif", "3 frames"


def _refused_multipage_tiff(d):
    frames = [Image.frombytes("RGB", (W, H), _u8(H, W, 3).tobytes()) for _ in range(2)]
    frames[0].save(d / "x.tif", save_all=True, append_images=frames[1:])
    return d / "x.tif", "2 frames"


REFUSED = {n[9:]: f for n, f in sorted(globals().items()) if n.startswith("_refused_")}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_mode_without_exact_rgb_is_refused_with_file_and_mode(tmp_path, name):
    root = tmp_path / "ds" / "train"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    src, needle = REFUSED[name](tmp_path)
    ok = Image.frombytes("RGB", (W, H), _u8(H, W, 3).tobytes())
    ok.save(root / "a" / "0.png")
    bad = root / "b" / f"0{src.suffix}"
    src.rename(bad)
    with pytest.raises(DataError) as e:
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert str(bad) in msg and needle in msg and "\n" not in msg, msg


# ---------------------------------------------------------------------------- EXIF orientation
def _displayed(raw: np.ndarray, o: int) -> np.ndarray:
    """EXIF 2.3 orientation table, pixel by pixel: what a viewer shows for stored ``raw``."""
    h, w = raw.shape[:2]
    rot = o >= 5  # 5..8 swap width and height
    out = np.empty((w, h, 3) if rot else (h, w, 3), raw.dtype)
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            src = {1: (r, c), 2: (r, w - 1 - c), 3: (h - 1 - r, w - 1 - c), 4: (h - 1 - r, c),
                   5: (c, r), 6: (h - 1 - c, r), 7: (h - 1 - c, w - 1 - r), 8: (c, w - 1 - r)}[o]
            out[r, c] = raw[src]
    return out


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    raw = _u8(H, W, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.frombytes("RGB", (W, H), raw.tobytes()).save(tmp_path / "x.png", exif=exif)
    got = imf._decode_one(tmp_path / "x.png")
    assert (got == _displayed(raw, orientation)).all() and got.shape == _displayed(raw, orientation).shape


# ---------------------------------------------------------------------------- class folders
def _two_classes(root: Path, n=2):
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(n):
            Image.frombytes("RGB", (W, H), _u8(H, W, 3).tobytes()).save(root / "train" / c / f"{i}.png")


def test_symlinked_class_folder_is_followed(tmp_path):
    _two_classes(tmp_path / "ds")
    elsewhere = tmp_path / "elsewhere" / "c"
    elsewhere.mkdir(parents=True)
    for i in range(3):
        Image.frombytes("RGB", (W, H), _u8(H, W, 3).tobytes()).save(elsewhere / f"{i}.png")
    (tmp_path / "ds" / "train" / "c").symlink_to(elsewhere, target_is_directory=True)
    x, y, info = load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    assert info.class_names == ["a", "b", "c"] and np.bincount(y).tolist() == [2, 2, 3]


def test_symlinked_image_is_followed(tmp_path):
    _two_classes(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "b" / "9.png").symlink_to(tmp_path / "ds" / "train" / "a" / "0.png")
    x, y, info = load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    assert np.bincount(y).tolist() == [2, 3] and (x[-1] == x[0]).all()


def test_broken_symlinked_class_folder_is_refused(tmp_path):
    _two_classes(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "c").symlink_to(tmp_path / "gone", target_is_directory=True)
    with pytest.raises(DataError, match=r"train/c' is a symbolic link to nothing"):
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")


def test_broken_symlinked_image_is_refused(tmp_path):
    _two_classes(tmp_path / "ds")
    (tmp_path / "ds" / "train" / "a" / "7.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match=r"train/a/7.png' is a symbolic link to nothing"):
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")


def test_one_class_is_refused(tmp_path):
    _two_classes(tmp_path / "ds")
    import shutil

    shutil.rmtree(tmp_path / "ds" / "train" / "b")
    with pytest.raises(DataError, match=r"one class folder \('a'\); a classifier needs at least 2"):
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")


def test_class_folder_emptied_after_a_cached_load_is_refused(tmp_path):
    # a cached decode must not hide a class folder that has lost its images since
    _two_classes(tmp_path / "ds")
    load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    for f in (tmp_path / "ds" / "train" / "b").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"class folder 'train/b' contains no images"):
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")


def test_image_of_other_size_is_named(tmp_path):
    _two_classes(tmp_path / "ds")
    odd = tmp_path / "ds" / "train" / "b" / "1.png"
    Image.frombytes("RGB", (W + 1, H), _u8(H, W + 1, 3).tobytes()).save(odd)
    with pytest.raises(DataError) as e:
        load_full(f"imagefolder:{tmp_path / 'ds'}", cache_dir=tmp_path / "cache")
    assert str(odd) in str(e.value) and f"{W + 1}x{H}" in str(e.value)
