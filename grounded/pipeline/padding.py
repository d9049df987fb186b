"""Images too small or too thin for a model: padded before encoding, results cropped back.

Vision backbones need a few pixels per feature level after their resize (Grounding DINO resizes the short
side to 800 with the long side capped at 1333, so a 3x2000 strip would reach the Swin backbone 2 pixels
high; a 1x1 image has no 32-pixel stage at all). The Predictor pads such an image on the bottom and right
with black to at least ``MIN_SIDE`` pixels a side and at most ``MAX_ASPECT`` : 1, keeps its original size,
and crops every result back: masks ``[:H, :W]``, boxes clipped to ``(W, H)``, and detections left with no
area inside the original image dropped. Images within both bounds are passed untouched (results unchanged).
"""

from __future__ import annotations

import numpy as np
import supervision as sv

MIN_SIDE = 32  # pixels: every side at least this
MAX_ASPECT = 8  # long side : short side at most this


def padded_size(hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) -> the (H', W') >= (H, W) the models are given: unchanged for images within the bounds."""
    h, w = hw
    least = max(MIN_SIDE, -(-max(h, w) // MAX_ASPECT))  # ceil(long / MAX_ASPECT)
    return max(h, least), max(w, least)


def pad_image(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) -> (H', W', 3) with black bottom-right padding (the same array when no padding is due)."""
    h, w = image.shape[:2]
    ph, pw = padded_size((h, w))
    if (ph, pw) == (h, w):
        return image
    out = np.zeros((ph, pw, image.shape[2]), dtype=image.dtype)
    out[:h, :w] = image
    return out


def crop_detections(detections: sv.Detections, hw: tuple[int, int]) -> sv.Detections:
    """Detections on a padded image -> on the original (H, W): masks cropped, boxes clipped, and those with
    no area left (box, or mask when there are masks) dropped."""
    h, w = hw
    if detections.mask is not None:
        detections.mask = np.ascontiguousarray(detections.mask[:, :h, :w])
    detections.xyxy = np.clip(detections.xyxy, 0, [w, h, w, h]).astype(np.float32)
    keep = (detections.xyxy[:, 2] > detections.xyxy[:, 0]) & (detections.xyxy[:, 3] > detections.xyxy[:, 1])
    if detections.mask is not None:
        keep &= detections.mask.reshape(len(detections), -1).any(axis=1)
    return detections if keep.all() else detections[keep]
