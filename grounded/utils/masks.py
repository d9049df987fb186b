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


def rasterize_semantic(
    masks: np.ndarray, class_ids: np.ndarray, shape: tuple[int, int], confidence: np.ndarray | None = None
) -> np.ndarray:
    """Instance masks -> one class index per pixel, (H, W) ``uint8``; 0 is background, class c is ``c + 1``.

    Overlap rule: larger instances are painted first and smaller ones over them, so a wheel stays visible on
    top of the car that contains it; equal areas are ordered by confidence (higher on top), then by index.
    """
    if len(masks) and masks.shape[1:] != tuple(shape):
        raise ValueError(f"masks have shape {masks.shape[1:]}, expected {tuple(shape)} (H, W)")
    if len(class_ids) and int(np.max(class_ids)) > 253:
        raise ValueError("rasterize_semantic stores class_id + 1 in uint8: at most 254 classes")
    out = np.zeros(shape, dtype=np.uint8)
    if len(masks) == 0:
        return out
    areas = masks.reshape(len(masks), -1).sum(1)
    conf = np.zeros(len(masks)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    order = sorted(range(len(masks)), key=lambda i: (-int(areas[i]), float(conf[i]), i))
    for i in order:
        out[masks[i]] = int(class_ids[i]) + 1
    return out
