"""Image inputs: every accepted form becomes the same RGB uint8 array; bad input names itself."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from grounded.errors import InputError
from grounded.utils.images import MAX_PIXELS_ENV, find_images, image_size, load_image

RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)  # (2, 2, 3)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: RGB, RGB),
        (lambda: Image.fromarray(RGB), RGB),
        (lambda: torch.from_numpy(RGB).permute(2, 0, 1).contiguous(), RGB),  # CHW uint8
        (lambda: torch.from_numpy(RGB).float() / 255.0, RGB),  # HWC float in [0, 1]
        (lambda: RGB.astype(np.float32) / 255.0, RGB),
        (lambda: np.concatenate([RGB, np.full((2, 2, 1), 7, np.uint8)], axis=2), RGB),  # RGBA: alpha dropped
        (lambda: RGB.astype(np.uint16) * 257, RGB),  # 16-bit scaled to 8
        (lambda: RGB[..., 0], np.repeat(RGB[..., :1], 3, axis=2)),  # grayscale expanded
        (lambda: Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), RGB),  # palette expanded
        (lambda: Image.fromarray(RGB[..., 0]), np.repeat(RGB[..., :1], 3, axis=2)),  # PIL "L"
    ],
    ids=["numpy", "pil", "tensor-chw", "tensor-float", "numpy-float", "rgba", "uint16", "gray", "palette", "pil-L"],
)
def test_inputs_become_rgb_uint8(make, expected):
    out = load_image(make())
    assert out.dtype == np.uint8 and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_16bit_png_file(tmp_path):
    arr = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)  # mode I;16
    out = load_image(path)
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], np.round(arr / 65535 * 255).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]  # left half red
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.shape == (40, 20, 3)  # displayed upright: portrait
    assert out[5, 10, 0] > 200 and out[35, 10, 0] < 60  # red half now on top


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _encoded(fmt: str, size=(64, 48)) -> bytes:
    """A smooth picture (coarse noise, upsampled) so resampled versions can be compared pixel by pixel."""
    coarse = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    coarse.resize(size, Image.Resampling.BICUBIC).save(buffer, fmt)
    return buffer.getvalue()


def _truncated(p, fmt, ext):
    data = _encoded(fmt)
    return _write(p / f"cut.{ext}", data[: len(data) * 2 // 3])


def _link(p, target, name="link.jpg"):
    (p / name).symlink_to(target)
    return p / name


def _bomb(p, side=12_000):
    Image.new("1", (side, side)).save(p / "bomb.png")  # ~50 KB on disk, 144 M pixels declared
    return p / "bomb.png"


def _fifo(p):
    os.mkfifo(p / "pipe.jpg")
    return p / "pipe.jpg"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.jpg", "not found"),
        (lambda p: _write(p / "empty.jpg", b""), "empty file (0 bytes)"),
        (lambda p: _write(p / "junk.png", b"not an image"), "not an image Pillow can read"),
        (lambda p: _truncated(p, "JPEG", "jpg"), "is truncated"),
        (lambda p: _truncated(p, "PNG", "png"), "is truncated"),
        (lambda p: _truncated(p, "TIFF", "tif"), "is truncated"),
        (lambda p: (p / "folder.jpg").mkdir() or p / "folder.jpg", "is a folder, not an image file"),
        (lambda p: _link(p, p / "nowhere.jpg"), "broken symbolic link"),
        (lambda p: _link(p, p / "loop.jpg", "loop.jpg"), "symbolic link loop"),
        (lambda p: _fifo(p), "not a regular file"),
        (lambda p: _bomb(p), "declares 12000 x 12000 = 144 M pixels, over the cap of 120 M"),
        (lambda p: _bomb(p, 20_000), "declares 400 M pixels, over the cap of 120 M"),  # Pillow's own check first
        (lambda p: np.zeros((0, 5, 3), np.uint8), "zero size"),
        (lambda p: np.zeros((4, 4, 2), np.uint8), "expected an array of shape"),
        (lambda p: np.full((4, 4, 3), 2.0, np.float32), "float images must hold values in [0, 1]"),
        (lambda p: 42, "unsupported image type"),
    ],
    ids=["missing", "empty-file", "junk-file", "truncated-jpeg", "truncated-png", "truncated-tiff", "folder",
         "dangling-link", "link-loop", "fifo", "bomb", "bomb-over-pillow", "zero-size", "two-channels",
         "float-range", "int"],
)
def test_bad_images_raise_clear_errors(tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        load_image(source)
    if isinstance(source, Path):
        assert str(source) in str(info.value)
        if message != "is truncated":  # found only by decoding
            with pytest.raises(InputError, match=re.escape(message)):
                image_size(source)  # the header-only reader says the same
        if message.startswith("declares"):
            assert "GROUNDED_MAX_PIXELS" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_permission_denied(tmp_path):
    path = _write(tmp_path / "secret.jpg", _encoded("JPEG"))
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        load_image(path)


def test_permission_denied_as_root_too(tmp_path, monkeypatch):
    path = _write(tmp_path / "secret.jpg", _encoded("JPEG"))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(InputError, match="permission denied"):
        load_image(path)


def test_pixel_cap_is_configurable(tmp_path, monkeypatch):
    path = _write(tmp_path / "big.png", _encoded("PNG", (300, 200)))  # 60 000 pixels
    with pytest.raises(InputError, match="over the cap"):
        load_image(path, max_pixels=50_000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "50000")
    with pytest.raises(InputError, match="over the cap"):
        load_image(path)
    assert load_image(path, max_pixels=60_000).shape == (200, 300, 3)  # the argument wins over the environment
    monkeypatch.setenv(MAX_PIXELS_ENV, "0")  # 0: no cap
    assert load_image(path).shape == (200, 300, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match="GROUNDED_MAX_PIXELS"):
        load_image(path)


def test_cap_raised_above_pillows_own_check(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow would refuse > 2 000 pixels
    path = _write(tmp_path / "mid.png", _encoded("PNG", (100, 50)))  # 5 000 pixels
    with pytest.raises(InputError, match="declares 5,000 pixels, over the cap of 2,000"):
        load_image(path, max_pixels=2_000)  # Pillow's error, in grounded's words
    assert load_image(path, max_pixels=10_000).shape == (50, 100, 3)  # Pillow's limit follows the raised cap
    assert Image.MAX_IMAGE_PIXELS == 5_000


def _exif_image(path: Path, size=(90, 60), orientation=6, fmt="JPEG") -> np.ndarray:
    """Save a (H, W) = (size[1], size[0]) image with an EXIF orientation; return how it must look upright."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[: size[1] // 2, : size[0] // 3] = [255, 0, 0]  # a red block in the stored top-left corner
    arr[size[1] // 2 :, size[0] // 2 :] = [0, 0, 255]
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_exif_orientations_match_pillow_and_image_size(tmp_path, orientation, fmt, ext):
    path = tmp_path / f"o{orientation}.{ext}"
    upright = _exif_image(path, orientation=orientation, fmt=fmt)
    out = load_image(path)
    assert out.shape == upright.shape and image_size(path) == upright.shape[:2]
    assert np.abs(out.astype(int) - upright).max() <= 2  # lossy WEBP aside, the same pixels
    if orientation >= 5:
        assert upright.shape[:2] == (90, 60)


@pytest.mark.parametrize(
    "fmt, size, max_side, expected",
    [
        ("JPEG", (900, 600), 300, (200, 300)),  # draft (1/2) then one resize
        ("JPEG", (900, 600), 450, (300, 450)),  # draft alone lands exactly
        ("PNG", (900, 600), 300, (200, 300)),  # no draft: one resize
        ("PNG", (901, 3), 300, (1, 300)),  # a thin image keeps at least one pixel
        ("JPEG", (200, 100), 300, (100, 200)),  # smaller than max_side: untouched
    ],
)
def test_reduced_decoding(tmp_path, fmt, size, max_side, expected):
    path = _write(tmp_path / f"big.{fmt.lower()}", _encoded(fmt, size))
    out = load_image(path, max_side=max_side)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    assert image_size(path) == (size[1], size[0])  # the original, for scaling results back
    full = np.asarray(Image.fromarray(load_image(path)).resize((expected[1], expected[0]), Image.Resampling.BILINEAR))
    assert np.abs(out.astype(int) - full).mean() < 3  # the same picture, resampled a little differently


@pytest.mark.parametrize("mode", ["I;16", "1", "P", "L", "RGBA"])
def test_reduced_decoding_keeps_every_mode_alike(tmp_path, mode):
    path = tmp_path / "big.png"
    picture = Image.open(io.BytesIO(_encoded("PNG", (600, 400))))
    if mode == "I;16":
        Image.fromarray(np.asarray(picture.convert("L")).astype(np.uint16) * 257).save(path)
    else:
        picture.convert(mode).save(path)
    out = load_image(path, max_side=150)
    full = np.asarray(Image.fromarray(load_image(path)).resize((150, 100), Image.Resampling.BILINEAR))
    assert out.shape == (100, 150, 3) and np.abs(out.astype(int) - full).mean() < 4


def test_reduced_decoding_applies_exif_after_resizing(tmp_path):
    path = tmp_path / "portrait.jpg"
    upright = _exif_image(path, size=(900, 600), orientation=8)  # stored landscape, shown portrait
    out = load_image(path, max_side=300)
    assert out.shape == (300, 200, 3) and image_size(path) == (900, 600)
    small = np.asarray(Image.fromarray(upright).resize((200, 300), Image.Resampling.BILINEAR))
    assert np.abs(out.astype(int) - small).mean() < 3


def test_find_images_recursive_any_case(tmp_path):
    for rel in ["a.JPG", "sub/b.jpeg", "sub/deeper/c.PnG", "d.tiff", "e.webp", "notes.txt", "f.Bmp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.JPG", "d.tiff", "e.webp", "f.Bmp", "sub/b.jpeg", "sub/deeper/c.PnG"]

