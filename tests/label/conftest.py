"""Shared fixtures: a folder of generated images (nested, mixed extensions, one broken file)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded.testing.fake import make_images


@pytest.fixture
def image_folder(tmp_path) -> Path:
    root = tmp_path / "images"
    make_images(root, 10)
    rng = np.random.default_rng(7)
    for rel, fmt in [("sub/a.JPG", "JPEG"), ("sub/b.jpeg", "JPEG"), ("sub/deep/c.bmp", "BMP"),
                     ("d.TIF", "TIFF"), ("e.webp", "WEBP"), ("img_00000.jpg", "JPEG")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / rel, format=fmt)
    (root / "broken.png").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not an image either")
    return root


@pytest.fixture
def mixed_images(tmp_path) -> Path:
    """Images of four sizes (landscape, portrait, square, one larger than the tiny models see: reduced)."""
    root = tmp_path / "mixed"
    for seed, (name, size, count) in enumerate([("wide", (72, 96), 3), ("tall", (96, 60), 2), ("square", (80, 80), 1),
                                                ("large", (400, 560), 2)]):
        make_images(root / name, count, size=size, seed=seed)
    return root


def _tree_bytes(folder: Path, skip: tuple[str, ...] = ("summary.json",)) -> dict[str, bytes]:
    """Every file below ``folder`` (links followed, their targets recorded) -> its bytes."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if name in skip:
                continue
            out[rel] = (os.readlink(path).encode() if path.is_symlink() else b"") + path.read_bytes()
    return out


@pytest.fixture
def tree_bytes():
    """The function ``tree_bytes(folder) -> {relative path: bytes}`` (summary.json, which has times, left out)."""
    return _tree_bytes
