"""Images too small or too thin for a model: padded before encoding, results cropped back.

Two things break on such images, measured with the tiny models and transformers 5.x: an image with a side
of 1, 3 or 4 pixels has its channel axis guessed wrongly by the image processors (a (3, 2000, 3) array is
read as channels-first), and an image thin enough that its resized short side rounds to 0 pixels makes the
resize fail (Grounding DINO caps the long side at 1333, so 1:1333 and beyond; the tiny test detector at
213). The Predictor pads such an image on the bottom and right with black to at least ``MIN_SIDE`` pixels a
side and at most ``MAX_ASPECT`` : 1, keeps its original size, and crops every result back: masks
``[:H, :W]``, boxes clipped to ``(W, H)``, and detections left with no area inside the original image
dropped. Images within both bounds (every ordinary photo) are passed untouched: results do not change.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

MIN_SIDE = 8  # pixels: every side at least this
MAX_ASPECT = 100  # long side : short side at most this (a short side of >= 2 px after any resize here)


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
