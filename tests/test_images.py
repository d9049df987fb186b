"""Image inputs: every accepted form becomes the same RGB uint8 array; bad input names itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from grounded.errors import InputError
from grounded.utils.images import find_images, load_image

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


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.jpg", "not found"),
        (lambda p: _write(p / "empty.jpg", b""), "empty file"),
        (lambda p: _write(p / "junk.png", b"not an image"), "cannot be read"),
        (lambda p: np.zeros((0, 5, 3), np.uint8), "zero size"),
        (lambda p: np.zeros((4, 4, 2), np.uint8), "expected an array of shape"),
        (lambda p: np.full((4, 4, 3), 2.0, np.float32), "float images must hold values in [0, 1]"),
        (lambda p: 42, "unsupported image type"),
    ],
    ids=["missing", "empty-file", "junk-file", "zero-size", "two-channels", "float-range", "int"],
)
def test_bad_images_raise_clear_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_image(make(tmp_path))


def test_find_images_recursive_any_case(tmp_path):
    for rel in ["a.JPG", "sub/b.jpeg", "sub/deeper/c.PnG", "d.tiff", "e.webp", "notes.txt", "f.Bmp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.JPG", "d.tiff", "e.webp", "f.Bmp", "sub/b.jpeg", "sub/deeper/c.PnG"]
