"""imagefolder:PATH — folders and archives, caching, and every error names its culprit."""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from rolekd_tf.data import imagefolder as imf
from rolekd_tf.data import load_full, load_splits
from rolekd_tf.errors import DataError

CLASSES = {"cat": 4, "dog": 3, "zebra": 5}          # sorted → ids 0, 1, 2
TEST_CLASSES = {"cat": 2, "dog": 1, "zebra": 2}     # the test split beside train/
SIZE = (8, 6)                                        # W x H


def _colour(label, i):
    return (40 * label + 10, 200 - 15 * i, (37 * (label + i)) % 256)


def make_tree(root, *, layout="wrapped", classes=CLASSES, test_classes=TEST_CLASSES, test_size=SIZE):
    """Write ``[wrap/]train/<class>/<i>.{png,jpg}`` + a ``test`` split + a non-image file.

    Returns the expected {relative train path: (label, rgb array)}. Test images are darker
    (``// 2``) than train images, so a test load that returned train images would show.
    """
    return make_tree_with_test(root, layout=layout, classes=classes, test_classes=test_classes,
                               test_size=test_size)[:2]


def make_tree_with_test(root, *, layout="wrapped", classes=CLASSES, test_classes=TEST_CLASSES,
                        test_size=SIZE):
    """:func:`make_tree` that also returns the expected {relative test path: (label, rgb array)}."""
    base = root / "mydata" if layout == "wrapped" else root
    expected, expected_test = {}, {}
    for split, classes_, size in (("train", classes, SIZE), ("test", test_classes or {}, test_size)):
        for label, (cls, n) in enumerate(sorted(classes_.items())):
            d = base / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.zeros((size[1], size[0], 3), np.uint8)
                arr[:] = _colour(label, i)
                if split == "test":
                    arr //= 2
                arr[0, 0] = (255, 255, 255)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(arr).save(d / f"{i:03d}.{ext}", quality=95)
                (expected if split == "train" else expected_test)[f"{split}/{cls}/{i:03d}.{ext}"] = (label, arr)
            (d / "notes.txt").write_text("not an image, ignored")
    return base, expected, expected_test


def make_tar(src_dir, tar_path, arcname="mydata"):
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(src_dir, arcname=arcname)
    return tar_path


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def _check(x, y, info, expected):
    assert x.dtype == np.uint8 and x.shape == (12, SIZE[1], SIZE[0], 3)
    assert y.dtype == np.int32 and np.bincount(y).tolist() == [4, 3, 5]
    assert info.class_names == ["cat", "dog", "zebra"] and info.num_classes == 3
    assert info.image_shape == (SIZE[1], SIZE[0], 3)
    # Order: classes sorted, files sorted within a class; PNGs are lossless, JPEGs close.
    order = sorted(expected)
    assert len(order) == 12
    for k, rel in enumerate(order):
        label, arr = expected[rel]
        assert y[k] == label
        if rel.endswith(".png"):
            np.testing.assert_array_equal(x[k], arr)
        else:
            assert np.abs(x[k].astype(int) - arr).mean() < 12
    f = x.astype(np.float64) / 255
    np.testing.assert_allclose(info.mean, f.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(info.std, f.std(axis=(0, 1, 2)), atol=1e-9)


def test_folder(tmp_path, cache):
    base, expected = make_tree(tmp_path / "src")
    x, y, info = load_full(f"imagefolder:{tmp_path / 'src'}", cache_dir=cache)
    _check(x, y, info, expected)


def test_folder_pointing_at_class_folders(tmp_path, cache):
    base, expected = make_tree(tmp_path / "src")
    x, y, info = load_full(f"imagefolder:{base / 'train'}", cache_dir=cache)
    _check(x, y, info, expected)


def test_archive(tmp_path, cache):
    _, expected = make_tree(tmp_path / "src")
    tar = make_tar(tmp_path / "src" / "mydata", tmp_path / "data.tar.gz")
    x, y, info = load_full(f"imagefolder:{tar}", cache_dir=cache)
    _check(x, y, info, expected)
    assert info.name == f"imagefolder:{tar}"
    # Extracted once into the cache, with no temporary leftovers.
    (entry,) = list((cache / "imagefolder").iterdir())
    assert (entry / "extracted" / "mydata" / "train" / "cat").is_dir()
    assert (entry / "decoded.npz").is_file()
    assert not list(entry.glob(".tmp-*"))


def test_plain_tar_without_wrapper(tmp_path, cache):
    _, expected = make_tree(tmp_path / "src", layout="flat")
    tar = tmp_path / "flat.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(tmp_path / "src" / "train", arcname="train")
    x, y, info = load_full(f"imagefolder:{tar}", cache_dir=cache)
    _check(x, y, info, expected)


def test_splits_from_imagefolder(tmp_path, cache):
    make_tree(tmp_path / "src")
    s = load_splits(f"imagefolder:{tmp_path / 'src'}", train_size=6, val_size=None,
                    holdout_size=3, seed=0, cache_dir=cache)
    assert len(s.y_train) == 6 and len(s.y_val) == 3 and len(s.y_holdout) == 3
    assert s.x_train.shape[1:] == (SIZE[1], SIZE[0], 3)


class _CountingDecoder:
    def __init__(self):
        self.calls = 0
        self.real = imf._decode_one

    def __call__(self, path):
        self.calls += 1
        return self.real(path)


def test_second_load_uses_cache_archive(tmp_path, cache, monkeypatch):
    make_tree(tmp_path / "src")
    tar = make_tar(tmp_path / "src" / "mydata", tmp_path / "data.tgz")
    dec = _CountingDecoder()
    monkeypatch.setattr(imf, "_decode_one", dec)
    extracts = []
    real_extract = imf.extract_archive
    monkeypatch.setattr(imf, "extract_archive", lambda *a: (extracts.append(a), real_extract(*a)))
    a = load_full(f"imagefolder:{tar}", cache_dir=cache)
    assert dec.calls == 12 and len(extracts) == 1
    b = load_full(f"imagefolder:{tar}", cache_dir=cache)
    assert dec.calls == 12 and len(extracts) == 1            # no decode, no extraction
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    # A lost .npz re-decodes from the existing extraction (no second extraction).
    (npz,) = list((cache / "imagefolder").glob("*/decoded.npz"))
    npz.unlink()
    load_full(f"imagefolder:{tar}", cache_dir=cache)
    assert dec.calls == 24 and len(extracts) == 1
    # A damaged .npz is a cache miss, not a crash.
    npz.write_bytes(b"garbage")
    c = load_full(f"imagefolder:{tar}", cache_dir=cache)
    np.testing.assert_array_equal(a[0], c[0])
    # A changed archive (new mtime/size) is a new cache entry.
    os.utime(tar, ns=(1_000_000_000, 1_000_000_000))
    load_full(f"imagefolder:{tar}", cache_dir=cache)
    assert len(extracts) == 2


def test_second_load_uses_cache_folder_and_notices_changes(tmp_path, cache, monkeypatch):
    base, _ = make_tree(tmp_path / "src")
    dec = _CountingDecoder()
    monkeypatch.setattr(imf, "_decode_one", dec)
    load_full(f"imagefolder:{tmp_path / 'src'}", cache_dir=cache)
    load_full(f"imagefolder:{tmp_path / 'src'}", cache_dir=cache)
    assert dec.calls == 12
    Image.fromarray(np.zeros((SIZE[1], SIZE[0], 3), np.uint8)).save(base / "train" / "dog" / "new.png")
    x, y, _ = load_full(f"imagefolder:{tmp_path / 'src'}", cache_dir=cache)
    assert dec.calls == 12 + 13 and len(y) == 13
    assert len(list((cache / "imagefolder").glob("*/decoded-*.npz"))) == 1   # old one dropped


def test_cache_dir_from_env(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    monkeypatch.setenv("ROLEKD_CACHE_DIR", str(tmp_path / "envcache"))
    load_full(f"imagefolder:{tmp_path / 'src'}")
    assert list((tmp_path / "envcache" / "imagefolder").glob("*/decoded-*.npz"))


# ----------------------------------------------------------------------------- errors

def _err(spec, cache):
    with pytest.raises(DataError) as e:
        load_full(spec, cache_dir=cache)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path, cache):
    assert str(tmp_path / "nope") in _err(f"imagefolder:{tmp_path / 'nope'}", cache)
    assert "needs a path" in _err("imagefolder:", cache)


def test_empty_folder(tmp_path, cache):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    msg = _err(f"imagefolder:{tmp_path / 'empty'}", cache)
    assert str(tmp_path / "empty") in msg and "no images" in msg


def test_empty_class_folder(tmp_path, cache):
    base, _ = make_tree(tmp_path / "src")
    (base / "train" / "lion").mkdir()
    (base / "train" / "lion" / "readme.txt").write_text("no images here")
    msg = _err(f"imagefolder:{tmp_path / 'src'}", cache)
    assert "train/lion" in msg and "no images" in msg


def test_empty_class_folder_in_archive(tmp_path, cache):
    base, _ = make_tree(tmp_path / "src")
    (base / "train" / "lion").mkdir()
    tar = make_tar(base, tmp_path / "d.tar.gz")
    msg = _err(f"imagefolder:{tar}", cache)
    assert "mydata/train/lion" in msg and str(tar) in msg


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_jpeg(tmp_path, cache, how):
    base, _ = make_tree(tmp_path / "src")
    bad = base / "train" / "dog" / "001.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        buf, format="JPEG")
    data = buf.getvalue()
    bad.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00not a jpeg" * 10)
    msg = _err(f"imagefolder:{tmp_path / 'src'}", cache)
    assert str(bad) in msg and "cannot decode" in msg


def test_corrupt_jpeg_in_archive_names_member(tmp_path, cache):
    base, _ = make_tree(tmp_path / "src")
    (base / "train" / "zebra" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    tar = make_tar(base, tmp_path / "d.tar.gz")
    msg = _err(f"imagefolder:{tar}", cache)
    assert f"{tar}:mydata/train/zebra/002.png" in msg


def test_image_of_other_size(tmp_path, cache):
    base, _ = make_tree(tmp_path / "src")
    odd = base / "train" / "zebra" / "004.png"
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(odd)
    msg = _err(f"imagefolder:{tmp_path / 'src'}", cache)
    assert str(odd) in msg and "9x9" in msg


def test_grey_and_rgba_images_become_rgb(tmp_path, cache):
    d = tmp_path / "g" / "train"
    (d / "a").mkdir(parents=True)
    (d / "b").mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 77, np.uint8), mode="L").save(d / "a" / "0.png")
    Image.fromarray(np.full((4, 4, 4), 200, np.uint8), mode="RGBA").save(d / "b" / "0.png")
    x, y, info = load_full(f"imagefolder:{tmp_path / 'g'}", cache_dir=cache)
    assert x.shape == (2, 4, 4, 3)
    assert (x[0] == 77).all() and (x[1] == 200).all()


def test_file_that_is_not_an_archive(tmp_path, cache):
    p = tmp_path / "data.zip"
    p.write_bytes(b"PK")
    assert str(p) in _err(f"imagefolder:{p}", cache)


def test_unreadable_archive(tmp_path, cache):
    p = tmp_path / "broken.tar.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage" * 20)
    assert str(p) in _err(f"imagefolder:{p}", cache)


def _evil_tar(tmp_path, add_bad):
    """A gzip tar with a few good members first, then the bad one."""
    base, _ = make_tree(tmp_path / "src")
    tar = tmp_path / "evil.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(base, arcname="mydata")
        add_bad(tf)
    return tar


def _add_file(tf, name, data=b"evil"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _add_special(tf, name, type_, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    tf.addfile(info)


@pytest.mark.parametrize("member,add", [
    ("../evil", lambda tf: _add_file(tf, "../evil")),
    ("mydata/train/cat/../../../evil2", lambda tf: _add_file(tf, "mydata/train/cat/../../../evil2")),
    ("/tmp/rolekd_abs_evil", lambda tf: _add_file(tf, "/tmp/rolekd_abs_evil")),
    ("mydata/train/cat/link.png", lambda tf: _add_special(tf, "mydata/train/cat/link.png",
                                                          tarfile.SYMTYPE, "/etc/passwd")),
    ("mydata/train/cat/hard.png", lambda tf: _add_special(tf, "mydata/train/cat/hard.png",
                                                          tarfile.LNKTYPE, "mydata/train/cat/000.png")),
    ("mydata/dev0", lambda tf: _add_special(tf, "mydata/dev0", tarfile.CHRTYPE)),
    ("mydata/fifo", lambda tf: _add_special(tf, "mydata/fifo", tarfile.FIFOTYPE)),
])
def test_hostile_archive_members_refused(tmp_path, cache, member, add):
    tar = _evil_tar(tmp_path, add)
    msg = _err(f"imagefolder:{tar}", cache)
    assert member in msg and str(tar) in msg
    # Nothing escaped, and the failed extraction left neither a tree nor temporaries.
    assert not (tmp_path / "evil").exists() and not (cache / "evil").exists()
    assert not os.path.exists("/tmp/rolekd_abs_evil")
    (entry,) = list((cache / "imagefolder").iterdir())
    assert not (entry / "extracted").exists()
    assert not list(entry.glob(".tmp-*"))


# ----------------------------------------------------------------------------- test split

def _check_test(x, y, expected_test):
    order = sorted(expected_test)
    assert x.dtype == np.uint8 and x.shape == (len(order), SIZE[1], SIZE[0], 3)
    assert y.dtype == np.int32
    for k, rel in enumerate(order):
        label, arr = expected_test[rel]
        assert y[k] == label, rel
        if rel.endswith(".png"):
            np.testing.assert_array_equal(x[k], arr)
        else:
            assert np.abs(x[k].astype(int) - arr).mean() < 12


@pytest.mark.parametrize("form", ["folder", "archive"])
def test_test_split_beside_train(tmp_path, cache, form):
    """``test/<class>/…`` beside ``train/`` is the test split: exact pixels, train's class ids."""
    _, expected, expected_test = make_tree_with_test(tmp_path / "src")
    spec = (f"imagefolder:{tmp_path / 'src'}" if form == "folder"
            else f"imagefolder:{make_tar(tmp_path / 'src' / 'mydata', tmp_path / 'd.tar.gz')}")
    s = load_splits(spec, train_size=6, val_size=None, holdout_size=3, seed=0, cache_dir=cache)
    assert s.test_split == "test" and len(s.y_train) + len(s.y_val) + len(s.y_holdout) == 12
    _check_test(s.x_test, s.y_test, expected_test)
    # the train split is unchanged by the test split's presence
    x, y, info = load_full(spec, cache_dir=cache)
    _check(x, y, info, expected)
    # explicit name = the same; 'none' = no test split (empty arrays shaped like the images)
    s2 = load_splits(spec, train_size=6, seed=0, cache_dir=cache, test_split="test")
    np.testing.assert_array_equal(s2.x_test, s.x_test)
    s3 = load_splits(spec, train_size=6, seed=0, cache_dir=cache, test_split="none")
    assert s3.x_test.shape == (0, SIZE[1], SIZE[0], 3) and s3.y_test.shape == (0,) and s3.test_split is None


@pytest.mark.parametrize("form", ["folder", "archive"])
def test_decoded_cache_is_keyed_on_the_split(tmp_path, cache, form, monkeypatch):
    """Train and test are cached in different files; neither load ever returns the other's arrays."""
    _, expected, expected_test = make_tree_with_test(tmp_path / "src")
    spec = (f"imagefolder:{tmp_path / 'src'}" if form == "folder"
            else f"imagefolder:{make_tar(tmp_path / 'src' / 'mydata', tmp_path / 'd.tar.gz')}")
    dec = _CountingDecoder()
    monkeypatch.setattr(imf, "_decode_one", dec)
    for _ in range(2):
        load_splits(spec, train_size=6, seed=0, cache_dir=cache)
        assert dec.calls == 12 + 5                  # each split decoded once, then read from cache
    (entry,) = list((cache / "imagefolder").iterdir())
    names = sorted(p.name for p in entry.glob("decoded*.npz"))
    assert len(names) == 2 and any("-test" in n for n in names), names
    x, y, info = load_full(spec, cache_dir=cache)
    _check(x, y, info, expected)
    s = load_splits(spec, train_size=6, seed=0, cache_dir=cache)
    _check_test(s.x_test, s.y_test, expected_test)
    assert dec.calls == 17
    # a cache file holding another split is a miss, never a wrong answer
    train_npz = next(p for p in entry.glob("decoded*.npz") if "-test" not in p.name)
    test_npz = next(p for p in entry.glob("decoded*.npz") if "-test" in p.name)
    test_npz.write_bytes(train_npz.read_bytes())
    s = load_splits(spec, train_size=6, seed=0, cache_dir=cache)
    _check_test(s.x_test, s.y_test, expected_test)
    assert dec.calls == 17 + 5


def test_no_test_folder_means_no_test_split(tmp_path, cache):
    make_tree(tmp_path / "src", test_classes=None)
    s = load_splits(f"imagefolder:{tmp_path / 'src'}", train_size=6, seed=0, cache_dir=cache)
    assert len(s.x_test) == 0 and s.test_split is None and s.x_test.shape[1:] == s.x_train.shape[1:]


def _load_err(spec, cache, **kw):
    with pytest.raises(DataError) as e:
        load_splits(spec, train_size=6, seed=0, cache_dir=cache, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_named_missing_split_is_one_line_error(tmp_path, cache):
    make_tree(tmp_path / "src")
    msg = _load_err(f"imagefolder:{tmp_path / 'src'}", cache, test_split="validation")
    assert "'validation'" in msg and "data.test_split: none" in msg
    # class folders at the root (no train/ folder): there are no other splits at all
    msg = _load_err(f"imagefolder:{tmp_path / 'src' / 'mydata' / 'train'}", cache, test_split="test")
    assert "'test'" in msg


def test_test_classes_must_match_train(tmp_path, cache):
    make_tree(tmp_path / "src", test_classes={"cat": 1, "dog": 1, "zebra": 1, "emu": 1})
    msg = _load_err(f"imagefolder:{tmp_path / 'src'}", cache)
    assert "classes differ" in msg and "emu" in msg


def test_test_images_must_match_train_size(tmp_path, cache):
    make_tree(tmp_path / "src", test_size=(SIZE[0] + 2, SIZE[1]))
    assert "share one size" in _load_err(f"imagefolder:{tmp_path / 'src'}", cache)


def test_test_split_train_is_refused(tmp_path, cache):
    make_tree(tmp_path / "src")
    assert "never trains on" in _load_err(f"imagefolder:{tmp_path / 'src'}", cache, test_split="train")
