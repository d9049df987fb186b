"""What the models see of an image, and the way back to the image as displayed.

The models never need more of an image than they resize it to, so before the models a large image is decoded
reduced: ``load_image(path, max_side=...)`` (JPEG draft, else one resize), with its displayed size read from
the header (``image_size``). By default (``max_side="model"``) the reduction comes from the loaded models:
each image is reduced to the long side at which it still gives every one of them all the pixels it uses
(``predictor.model_side(hw)``, from each backend's ``input_size``: for Grounding DINO + SAM at most 1333 px,
1067 px for a 4:3 photo); a predictor that does not say is given every image whole. An int caps every image at
that long side, None never reduces. Images too small or too thin for a model are padded by the Predictor
itself (:mod:`grounded.pipeline.padding`), which crops its results back before they arrive here.

Results come back at the original (displayed) resolution: boxes clipped to the image and scaled, masks
cropped and upsampled (nearest) one at a time, each RLE-encoded before the next, so a 6000 x 4000 photo
holds one full-resolution mask at a time and costs about what a 1333 px one does. An image that needs
neither step is passed through untouched (same results, same bytes, as without this module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from grounded.errors import InputError
from grounded.utils.masks import mask_to_rle

MODEL_SIDE = "model"  # max_side: each image reduced to what the predictor's models see of it (predictor.model_side)

MaxSide = int | str | None  # MODEL_SIDE, a long side in pixels, or None (never reduce)


def check_max_side(max_side: MaxSide) -> None:
    """Refuse a ``max_side`` that is none of "model", a positive int or None, saying what is accepted."""
    if max_side is None or max_side == MODEL_SIDE:
        return
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InputError(f"max_side must be {MODEL_SIDE!r} (what the models see), a positive number of pixels "
                         f"or None (never reduce), got {max_side!r}")


def side_limit(max_side: MaxSide, predictor: Any) -> Callable[[tuple[int, int]], int | None]:
    """The long side to decode an image of displayed size (H, W) at (None: whole), for ``max_side``."""
    check_max_side(max_side)
    if max_side != MODEL_SIDE:
        return lambda hw: max_side
    model_side = getattr(predictor, "model_side", None)
    return model_side if callable(model_side) else (lambda hw: None)


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
