"""Image loading: every accepted input becomes one RGB ``uint8`` array of shape (H, W, 3).

Accepted inputs:
- a path (``str`` or ``pathlib.Path``) to any format Pillow reads; EXIF orientation is applied;
- a ``PIL.Image.Image`` (EXIF orientation applied if the image carries it);
- a numpy array: (H, W) grayscale, (H, W, 1), (H, W, 3) **RGB** or (H, W, 4) RGBA; ``uint8``, ``uint16``
  (scaled to 8 bits), ``bool`` or float in [0, 1];
- a torch tensor: (3, H, W) / (1, H, W) channels-first or (H, W, 3) channels-last, ``uint8`` or float in
  [0, 1].

Colour order: arrays and tensors are taken as **RGB**. OpenCV users must convert BGR first
(``image[..., ::-1]``). Both Grounding DINO and SAM are given RGB; alpha is dropped, palette and grayscale
images are expanded to RGB, 16-bit images are scaled to 8 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grounded.errors import InputError

ImageInput = str | Path | Image.Image | np.ndarray | Any  # Any: torch.Tensor (imported lazily)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.int64 if image.mode == "I" else np.uint16)
        top = 65535 if image.mode != "I" else max(int(arr.max()), 1)
        arr = np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image), name)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"))


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"{name}: expected an array of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < 0.0 or np.nanmax(arr) > 1.0):
            raise InputError(f"{name}: float images must hold values in [0, 1]; scale it or pass uint8")
        arr = (np.nan_to_num(arr) * 255.0).round().astype(np.uint8)
    else:
        raise InputError(f"{name}: unsupported dtype {arr.dtype}; pass uint8 RGB (or uint16 / float in [0, 1])")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def check_image_file(path: str | Path, name: str | None = None) -> None:
    """Cheap checks without decoding: the file exists and is not empty (InputError naming it otherwise)."""
    path = Path(path)
    label = name or str(path)
    if not path.is_file():
        raise InputError(f"image {label!r} not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(f"image {label!r} is an empty file (0 bytes); re-copy or remove it")


def load_image(image: ImageInput, name: str | None = None) -> np.ndarray:
    """Return ``image`` as an RGB ``uint8`` array (H, W, 3); raise :class:`InputError` naming it if unusable."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        label = name or str(path)
        check_image_file(path, label)
        try:
            with Image.open(path) as pil:
                pil.load()
                arr = _pil_to_rgb(pil, label)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"image {label!r} cannot be read ({exc}); is it a valid image file?") from None
    elif isinstance(image, Image.Image):
        label = name or "PIL image"
        arr = _pil_to_rgb(image, label)
    elif isinstance(image, np.ndarray):
        label = name or "numpy image"
        arr = _array_to_rgb(image, label)
    elif type(image).__module__.startswith("torch"):
        label = name or "tensor image"
        tensor = image.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4) and tensor.shape[-1] not in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        arr = _array_to_rgb(tensor.numpy(), label)
    else:
        raise InputError(
            f"unsupported image type {type(image).__name__}: pass a path, PIL.Image, numpy HxWx3 RGB array or tensor"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image {label!r} has zero size {arr.shape[:2]}; it holds no pixels")
    return arr


def find_images(root: str | Path) -> list[Path]:
    """Every image file below ``root`` (recursive, any case of a known extension), sorted for determinism."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {str(root)!r} not found or not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
