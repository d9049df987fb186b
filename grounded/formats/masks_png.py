"""Semantic mask PNGs: one class index per pixel, in a palette PNG that image viewers show in colour.

Pixel values: 0 is background, class ``c`` is ``c + 1`` (so at most 254 classes). Where instances overlap,
:func:`grounded.utils.masks.rasterize_semantic` decides: larger instances are painted first and smaller ones
over them (a wheel stays visible on the car around it), equal areas by confidence. The distillation
training targets use the same rule.

Files are 8-bit palette PNGs ("P" mode): ``np.asarray(Image.open(p))`` gives the class indices directly and
the palette (``sv.ColorPalette.DEFAULT``, background black) is only for viewing. ``labels.txt`` beside them
lists ``index name`` per line.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image

from grounded.errors import InputError
from grounded.formats.files import atomic_write_bytes, atomic_write_text
from grounded.utils.images import check_image_file, upright
from grounded.utils.masks import rasterize_semantic


def palette() -> list[int]:
    """768 palette values: black for background, supervision's default colours for classes 1..255."""
    colors = sv.ColorPalette.DEFAULT
    values = [0, 0, 0]
    for k in range(255):
        c = colors.by_idx(k)
        values += [c.r, c.g, c.b]
    return values


def detections_to_semantic(detections: sv.Detections, height: int, width: int,
                           masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """(H, W) uint8 class map (0 background, class c -> c + 1) from instance masks (boxes if no masks).

    ``masks``: N (H, W) bool masks read one at a time (default ``detections.mask``; an
    :class:`grounded.utils.masks.RleMasks` is never decoded whole).
    """
    masks = detections.mask if masks is None else masks
    if masks is None:  # boxes only: fill them
        masks = np.zeros((len(detections), height, width), dtype=bool)
        for k, (x0, y0, x1, y1) in enumerate(np.round(detections.xyxy).astype(int)):
            masks[k, max(y0, 0) : y1, max(x0, 0) : x1] = True
    class_ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), dtype=int)
    return rasterize_semantic(masks, class_ids, (height, width), detections.confidence)


def save_mask_png(path: str | Path, detections: sv.Detections, height: int, width: int,
                  masks: Sequence[np.ndarray] | None = None) -> None:
    """Write one image's class map as a palette PNG, atomically (``masks`` as in :func:`detections_to_semantic`)."""
    image = Image.fromarray(detections_to_semantic(detections, height, width, masks), mode="P")
    image.putpalette(palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def load_mask_png(path: str | Path) -> np.ndarray:
    """(H, W) uint8 class map (0 background, class c -> c + 1), in display orientation like every image
    (an EXIF orientation in the PNG, rare, is applied; see :mod:`grounded.utils.images`).

    InputError if the file is not an 8-bit palette or grey image (an RGB picture of the classes is not a
    class map) or cannot be read.
    """
    check_image_file(path, f"mask {path}")
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise InputError(f"mask {str(path)!r}: expected an 8-bit palette or grey PNG of class indices, "
                                 f"got mode {image.mode}")
            return np.ascontiguousarray(upright(np.asarray(image), image))
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"mask {str(path)!r} cannot be read ({exc}); re-export or remove it") from None


def semantic_to_detections(class_map: np.ndarray) -> sv.Detections:
    """One detection per class present in a class map: its mask, box and ``class_id`` (index - 1)."""
    values = [int(v) for v in np.unique(class_map) if v != 0]
    if not values:
        return sv.Detections.empty()
    masks = np.stack([class_map == v for v in values])
    return sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array(values) - 1)


def save_labels_txt(path: str | Path, classes: list[str]) -> None:
    atomic_write_text(path, "0 background\n" + "".join(f"{k + 1} {name}\n" for k, name in enumerate(classes)))
