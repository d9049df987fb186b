"""Image loading: every accepted input becomes one RGB ``uint8`` array of shape (H, W, 3).

**Orientation rule (the one rule, for all of grounded):** every pixel array and every coordinate in grounded
is in *display* orientation, EXIF orientation applied, as photo viewers, browsers, OpenCV's ``imread`` and
Ultralytics show the image. Records, exports (COCO sizes, polygons, RLE, YOLO lines, mask PNGs, VOC boxes)
and the dataset readers all follow it, so ``load_image(path)`` and the labels read back always align.
:func:`image_size` gives that displayed (H, W) from the header alone.

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

Limits on files:
- **Pixel cap.** A file whose header declares more than :data:`MAX_PIXELS` pixels (120 M by default) is
  refused *before* decoding, with an :class:`InputError` naming the file, its declared size and the setting:
  ``load_image(..., max_pixels=N)`` or the environment variable ``GROUNDED_MAX_PIXELS`` (0 = no cap). The
  default admits every camera photo up to 108 MP sensors (12000 x 9000) and 100 MP medium format, yet keeps
  a decoded image at <= 360 MB of RGB and one full-resolution mask at <= 120 MB, far from exhausting a
  24 GB machine. Pillow's own bomb check (an error over 179 M pixels) gives the same message; a cap raised
  above it raises Pillow's limit too, process-wide. (Pillow warns, ``DecompressionBombWarning``, for images
  between its 89 M and this cap: they are decoded.)
- **Reduced decoding.** ``load_image(path, max_side=S)`` decodes an image larger than ``S`` on its long
  side reduced: JPEG through ``Image.draft`` (the decoder skips DCT coefficients: 2-8x less work and
  memory), then one resize to at most ``S``. :func:`image_size` gives the original displayed size, so boxes
  and masks found on the reduced image can be scaled back.
- Missing files, folders and symbolic-link loops named like images, dangling links, permission denied,
  special files, empty and truncated files each get their own :class:`InputError` message, never a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from grounded.errors import InputError

ImageInput = str | Path | Image.Image | np.ndarray | Any  # Any: torch.Tensor (imported lazily)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 120_000_000  # default decoded-pixel cap (see the module docstring)
MAX_PIXELS_ENV = "GROUNDED_MAX_PIXELS"

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {  # EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def pixel_cap(override: int | None = None) -> int | None:
    """The pixel cap in force: ``override``, else ``$GROUNDED_MAX_PIXELS``, else :data:`MAX_PIXELS`; None = off."""
    value: Any = override
    if value is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if text:
            try:
                value = int(float(text))
            except ValueError:
                raise InputError(f"{MAX_PIXELS_ENV}={text[:40]!r} is not a number of pixels (e.g. 200000000)") from None
        else:
            value = MAX_PIXELS
    return None if int(value) <= 0 else int(value)


# ------------------------------------------------------------------------------------------------ files
def check_image_file(path: str | Path, name: str | None = None) -> None:
    """Checks without opening: the path is a readable, non-empty regular file; else an InputError saying what it is."""
    path = Path(path)
    label = name or str(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"image {label!r} is a symbolic link loop (it points back to itself); remove or fix the link") from None
        if exc.errno == errno.EACCES:
            raise InputError(f"image {label!r} cannot be reached: permission denied on a folder of its path") from None
        if os.path.islink(path):
            raise InputError(
                f"image {label!r} is a broken symbolic link (it points to {os.readlink(path)!r}, which does not "
                "exist); restore the target or remove the link"
            ) from None
        raise InputError(f"image {label!r} not found; check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"image {label!r} is a folder, not an image file (its name only looks like one)")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"image {label!r} is not a regular file (a pipe, socket or device); give an image file")
    if info.st_size == 0:
        raise InputError(f"image {label!r} is an empty file (0 bytes); re-copy or remove it")
    if not os.access(path, os.R_OK):
        raise InputError(f"image {label!r} cannot be read: permission denied; give read permission (chmod +r)")


def _open(path: Path, label: str, cap: int | None) -> Image.Image:
    """Open ``path`` lazily (header only) and refuse it, from the header, if it declares more than ``cap`` pixels."""
    check_image_file(path, label)
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and (cap is None or cap > 2 * limit):
        # the caller raised the cap above Pillow's own bomb check: raise Pillow's too (process-wide, one way;
        # no save-and-restore, which would race with other threads decoding)
        Image.MAX_IMAGE_PIXELS = None if cap is None else cap // 2
    try:
        pil = Image.open(path)
    except Image.DecompressionBombError as exc:  # Pillow's own check (over twice its limit) came first
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{_pixels(int(pixels[1]))} pixels" if pixels else "too many pixels"
        raise InputError(f"image {label!r} declares {declared}, over the cap of {_pixels(cap or 0)} (decoding it "
                         f"could exhaust memory); {_raise_cap_hint()}") from None
    except UnidentifiedImageError:
        raise InputError(f"image {label!r} is not an image Pillow can read (unknown format or corrupt header); "
                         "is it a valid image file?") from None
    except PermissionError:
        raise InputError(f"image {label!r} cannot be read: permission denied; give read permission (chmod +r)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {label!r} cannot be read ({exc}); is it a valid image file?") from None
    width, height = pil.size
    if cap is not None and width * height > cap:
        pil.close()
        raise InputError(
            f"image {label!r} declares {width} x {height} = {_pixels(width * height)} pixels, over the cap of "
            f"{_pixels(cap)} (decoding it could exhaust memory); {_raise_cap_hint()}"
        )
    if width == 0 or height == 0:
        pil.close()
        raise InputError(f"image {label!r} has zero size {(height, width)}; it holds no pixels")
    return pil


def _pixels(count: int) -> str:
    return f"{count / 1e6:.0f} M" if count >= 10_000_000 else f"{count:,}"


def _raise_cap_hint() -> str:
    return (f"if the file is genuine, raise the cap: environment variable {MAX_PIXELS_ENV}=N "
            "(pixels; 0 = no cap) or load_image(..., max_pixels=N)")


def _orientation(pil: Image.Image) -> int:
    """EXIF orientation 1-8 from the header (1 when absent or invalid); never decodes pixels."""
    try:
        value = int(Image.Image.getexif(pil).get(_ORIENTATION_TAG, 1))  # the base method: PNG's would decode
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a readable image unreadable
        return 1
    return value if value in _TRANSPOSE else 1


def image_size(path: str | Path, name: str | None = None, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Displayed (H, W) of an image file, EXIF orientation applied, from the header alone (no decoding).

    The size ``load_image(path)`` returns without ``max_side``; InputError (as :func:`load_image`) if unusable.
    """
    path = Path(path)
    with _open(path, name or str(path), pixel_cap(max_pixels)) as pil:
        width, height = pil.size
        rotated = _orientation(pil) in (5, 6, 7, 8)
    return (width, height) if rotated else (height, width)


def _decode(pil: Image.Image, label: str, max_side: int | None) -> np.ndarray:
    """Decode an opened file: reduced if ``max_side`` (JPEG draft + one resize), then EXIF-rotated to RGB."""
    orientation = _orientation(pil)
    width, height = pil.size
    target = None
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if pil.format == "JPEG":
            pil.draft("RGB", target)  # the decoder scales by 1/2, 1/4 or 1/8, staying >= target
    try:
        pil.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise InputError(f"image {label!r} is truncated (the file ends before its pixels do: an interrupted "
                             "copy or download?); re-copy it") from None
        raise InputError(f"image {label!r} cannot be decoded ({exc}); is it a valid image file?") from None
    except MemoryError:
        raise InputError(f"image {label!r}: out of memory decoding {width} x {height} pixels; {_raise_cap_hint()}") from None
    if target is not None and pil.size != target:
        pil = _reduce(pil, target)
    return _orient(_pil_to_rgb(pil, label, orientation=1), orientation)


def _reduce(pil: Image.Image, size: tuple[int, int]) -> Image.Image:
    """One resize to ``size`` in the decoded mode (no full-resolution RGB copy); bilinear, antialiased."""
    if pil.mode.startswith("I;16"):  # scaled to 8 bits first, as at full resolution
        pil = Image.fromarray(_pil_to_rgb(pil, "", orientation=1))
    elif pil.mode == "1":
        pil = pil.convert("L")
    elif pil.mode == "P":
        pil = pil.convert("RGBA" if "transparency" in pil.info else "RGB")
    elif pil.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        pil = pil.convert("RGBA" if "A" in pil.mode else "RGB")
    return pil.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    method = _TRANSPOSE.get(orientation)
    return arr if method is None else np.array(Image.fromarray(arr).transpose(method))


def upright(array: np.ndarray, image: Image.Image) -> np.ndarray:
    """``array`` (H, W[, C]) decoded from ``image`` as stored, turned to display orientation by ``image``'s EXIF
    (for readers of label maps and other non-RGB files, so they follow the same rule as :func:`load_image`)."""
    return _orient(array, _orientation(image))


# ------------------------------------------------------------------------------------------ conversion
def _pil_to_rgb(image: Image.Image, name: str, orientation: int | None = None) -> np.ndarray:
    orientation = _orientation(image) if orientation is None else orientation
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.int64 if image.mode == "I" else np.uint16)
        top = 65535 if image.mode != "I" else max(int(arr.max()), 1)
        arr = np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
        return _orient(np.repeat(arr[..., None], 3, axis=2), orientation)
    if image.mode == "F":
        return _orient(_array_to_rgb(np.asarray(image), name), orientation)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return _orient(np.array(image.convert("RGB")), orientation)  # np.array: writable (torch warns on read-only)


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


def load_image(
    source: ImageInput, name: str | None = None, *, max_side: int | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Return ``source`` as an RGB ``uint8`` array (H, W, 3) in display orientation; InputError naming it if unusable.

    Args:
        source: a path, ``PIL.Image``, numpy array or torch tensor (see the module docstring).
        name: how error messages name the image (default: the path, or its kind).
        max_side: for files, decode an image whose long side exceeds this reduced to at most ``max_side``
            (aspect kept); :func:`image_size` gives the original displayed size. None: full resolution.
        max_pixels: the decoded-pixel cap for files (default ``$GROUNDED_MAX_PIXELS`` or :data:`MAX_PIXELS`;
            0 turns it off), checked from the header before decoding.
    """
    if max_side is not None and int(max_side) < 1:
        raise InputError(f"max_side must be a positive number of pixels, got {max_side!r}")
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = name or str(path)
        with _open(path, label, pixel_cap(max_pixels)) as pil:
            arr = _decode(pil, label, max_side)
    elif isinstance(source, Image.Image):
        label = name or "PIL image"
        arr = _pil_to_rgb(source, label)
    elif isinstance(source, np.ndarray):
        label = name or "numpy image"
        arr = _array_to_rgb(source, label)
    elif type(source).__module__.startswith("torch"):
        label = name or "tensor image"
        tensor = source.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4) and tensor.shape[-1] not in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        arr = _array_to_rgb(tensor.numpy(), label)
    else:
        raise InputError(
            f"unsupported image type {type(source).__name__}: pass a path, PIL.Image, numpy HxWx3 RGB array or tensor"
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
