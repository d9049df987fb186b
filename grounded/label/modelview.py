"""What the models see of an image, and the way back to the image as displayed.

The teacher never needs more than about 1333 px on the long side (Grounding DINO resizes to 800 x 1333 at
most, SAM to 1024), so before the models an image larger than ``max_side`` (default :data:`MAX_SIDE`) is
decoded reduced: ``load_image(path, max_side=...)`` (JPEG draft, else one resize), with its displayed size
read from the header (``image_size``). Images too small or too thin for a model are padded by the
Predictor itself (:mod:`grounded.pipeline.padding`), which crops its results back before they arrive here.

Results come back at the original (displayed) resolution: boxes clipped to the image and scaled, masks
cropped and upsampled (nearest) one at a time, each RLE-encoded before the next, so a 6000 x 4000 photo
holds one full-resolution mask at a time and costs about what a 1333 px one does. An image that needs
neither step is passed through untouched (same results, same bytes, as without this module).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import supervision as sv

from grounded.utils.masks import mask_to_rle

MAX_SIDE = 1333  # the longest side Grounding DINO's default processor resizes to


@dataclass(frozen=True)
class ModelView:
    """Sizes (H, W) of an image as displayed and as given to the models (after reduction)."""

    original: tuple[int, int]
    scaled: tuple[int, int]

    @property
    def untouched(self) -> bool:
        return self.original == self.scaled


def to_model(image: np.ndarray, original: tuple[int, int] | None = None) -> tuple[np.ndarray, ModelView]:
    """RGB uint8 (h, w, 3), decoded reduced or not, and the displayed (H, W) of the original (default: the
    image's own) -> (the image as given to the models, the sizes to map results back)."""
    h, w = image.shape[:2]
    return image, ModelView(tuple(original or (h, w)), (h, w))


def restore(detections: sv.Detections, view: ModelView) -> tuple[sv.Detections, Iterator[dict] | None]:
    """Detections on the models' view -> (detections with boxes at the original size and no masks,
    an iterator of the masks' COCO RLEs at the original size, made one at a time; None without masks)."""
    masks = detections.mask
    if view.untouched:
        detections.mask = None
        return detections, (None if masks is None else (mask_to_rle(m) for m in masks))
    (H, W), (h, w) = view.original, view.scaled
    xyxy = np.clip(detections.xyxy.astype(np.float64), 0, [w, h, w, h])
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # drop what lies outside the image
    detections = detections[keep]
    detections.xyxy = (xyxy[keep] * [W / w, H / h, W / w, H / h]).astype(np.float32)
    if masks is None:
        return detections, None
    masks = masks[keep]
    detections.mask = None
    rows = np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
    return detections, (mask_to_rle(m[:h, :w][rows][:, cols]) for m in masks)  # rows then columns: 2x faster
