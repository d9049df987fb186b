"""Mask helpers: COCO RLE (through pycocotools), mask areas and IoU.

Masks are boolean arrays (H, W) or stacks (N, H, W). RLE dicts are COCO's compressed form with ``counts``
as a UTF-8 string so they serialise to JSON unchanged.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def mask_to_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE (compressed, string or bytes counts, or uncompressed list counts) -> (H, W) bool."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle.get("counts"), str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("utf-8")}
    return mask_utils.decode(rle).astype(bool)


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of mask stacks a (N, H, W) and b (M, H, W) -> (N, M) float."""
    a2 = a.reshape(len(a), -1).astype(np.float32)
    b2 = b.reshape(len(b), -1).astype(np.float32)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
