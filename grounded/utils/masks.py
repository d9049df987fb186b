"""Mask helpers: COCO RLE (through pycocotools), mask areas and IoU.

Masks are boolean arrays (H, W) or stacks (N, H, W). RLE dicts are COCO's compressed form with ``counts``
as a UTF-8 string so they serialise to JSON unchanged. :class:`RleMasks` is a stack of N masks kept as RLE
and decoded one at a time, for code that must not hold an image's full-size masks together (the exports).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def mask_to_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE ``{"size": [H, W], "counts": str}``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("utf-8")
    return rle


def mask_box(mask: np.ndarray) -> list[float]:
    """Tight XYXY pixel box of an (H, W) mask, ``[x0, y0, x1 + 1, y1 + 1]``; zeros when the mask is empty.
    Row and column reductions, not ``np.nonzero``: a few ms less on a full-size mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    if len(ys) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    xs = np.flatnonzero(mask.any(axis=0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE (compressed, string or bytes counts, or uncompressed list counts) -> (H, W) bool."""
    return mask_utils.decode(_compressed(rle)).astype(bool)


def masks_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of mask stacks a (N, H, W) and b (M, H, W) -> (N, M) float."""
    a2 = a.reshape(len(a), -1).astype(np.float32)
    b2 = b.reshape(len(b), -1).astype(np.float32)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def rasterize_semantic(
    masks: np.ndarray | Sequence[np.ndarray], class_ids: np.ndarray, shape: tuple[int, int],
    confidence: np.ndarray | None = None,
) -> np.ndarray:
    """Instance masks -> one class index per pixel, (H, W) ``uint8``; 0 is background, class c is ``c + 1``.

    ``masks``: (N, H, W) bool, or any sequence of N (H, W) bool masks (an :class:`RleMasks` is decoded one
    mask at a time). Overlap rule: larger instances are painted first and smaller ones over them, so a wheel
    stays visible on top of the car that contains it; equal areas are ordered by confidence (higher on
    top), then by index.
    """
    if len(class_ids) and int(np.max(class_ids)) > 253:
        raise ValueError("rasterize_semantic stores class_id + 1 in uint8: at most 254 classes")
    out = np.zeros(shape, dtype=np.uint8)
    if len(masks) == 0:
        return out
    areas = masks.areas() if isinstance(masks, RleMasks) else [int(np.count_nonzero(m)) for m in masks]
    conf = np.zeros(len(masks)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    order = sorted(range(len(masks)), key=lambda i: (-int(areas[i]), float(conf[i]), i))
    for i in order:
        mask = masks[i]
        if mask.shape != tuple(shape):
            raise ValueError(f"masks have shape {mask.shape}, expected {tuple(shape)} (H, W)")
        out[mask] = int(class_ids[i]) + 1
    return out


class RleMasks(Sequence):
    """N masks of one (H, W) image kept as COCO RLE; ``masks[k]`` decodes mask ``k`` only, (H, W) bool.

    Stands in for a (N, H, W) stack wherever masks are read one at a time, so an image's full-resolution
    masks are never all decoded together (a 10000 x 10000 mask is 100 MB as bool). :meth:`areas` counts
    pixels without decoding anything.
    """

    def __init__(self, rles: Sequence[dict]) -> None:
        self.rles = list(rles)

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, index):  # Sequence's protocol: an int gives a mask, a slice a smaller RleMasks
        if isinstance(index, slice):
            return RleMasks(self.rles[index])
        return rle_to_mask(self.rles[index])

    def areas(self) -> np.ndarray:
        """(N,) int64 pixel counts, from the run lengths."""
        return np.array([int(mask_utils.area(_compressed(rle))) for rle in self.rles], dtype=np.int64)

    def select(self, keep: np.ndarray) -> RleMasks:
        """The masks where the (N,) bool ``keep`` is True (or at the given indices)."""
        return RleMasks([self.rles[i] for i in np.arange(len(self.rles))[keep]])


def _compressed(rle: dict) -> dict:
    """A COCO RLE as pycocotools' C functions take it (bytes counts; list counts compressed)."""
    if isinstance(rle.get("counts"), list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    if isinstance(rle.get("counts"), str):
        return {"size": rle["size"], "counts": rle["counts"].encode("utf-8")}
    return rle
