"""Tiled inference, the pure parts: where the slices go, how boxes found on them merge, where the segmenter looks.

Large photos with small objects (drone, satellite, microscopy, shelves) lose those objects when a detector
shrinks the image to its 800-1333 px input. Tiling runs the detector over overlapping slices at full
resolution, and (SAHI's "standard prediction") over the whole image too, then merges what they found. The
composition over a Predictor's backends is :mod:`grounded.pipeline.tiled`; these functions hold no model.

- :func:`slice_boxes`: the slices of an (H, W) image, XYXY int pixels, equal to SAHI's
  ``sahi.slicing.get_slice_bboxes`` for the same size and overlap ratio (rows top to bottom, then columns;
  the last row and column are moved back inside the image, so every slice has the full size when the image
  is at least as large).
- :func:`greedy_nmm`: SAHI's GREEDYNMM (its default postprocess for sliced prediction): per class, in score
  order, each kept box absorbs the lower-scored boxes whose overlap with it (IoS: intersection over the
  smaller area, by default) reaches the threshold; each absorbed box is checked again against the growing
  union box and merged when it still matches (as SAHI does, one that no longer matches is dropped). The
  merged detection keeps the keeper's score (the group's highest), class and phrase, with the union box.
  Overlapping candidates are found on a grid, so 50,000 boxes need no N x N matrix.
- :func:`crop_regions`: where the segmenter runs at full resolution: windows of the segmenter's own input
  side around the merged boxes (with some context), each holding several boxes, so its image encoder runs once
  per window, not once per box. A box larger than that side gets a window of its own size (seen reduced, as
  without tiling); a small box never joins such a window.
- :func:`input_side`: the square side a backend sees at full resolution (from its ``input_size``, the
  processor's own settings); ``"auto"`` tiles only an image larger than what the backend resizes it to.
- :func:`compact_masks` / :func:`union_masks`: masks at the image's full size as supervision's
  ``CompactMask`` (each mask run-length encoded within its own bounding box), so a 50 MP image's masks cost
  what their objects cover, not N x H x W bytes.

Boxes are XYXY float pixels of the full image, as everywhere in grounded (right/bottom exclusive).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image

from grounded.errors import InputError

MERGE_METRIC = "ios"  # SAHI's default for GREEDYNMM: intersection over the smaller box's area
MERGE_THRESHOLD = 0.5  # SAHI's default match threshold
CONTEXT = 0.1  # the segmenter's window holds this fraction of a box's long side around it (at least MIN_CONTEXT)
MIN_CONTEXT = 8  # pixels
_SMALL = 2048  # below this many boxes every pair is compared directly


# ------------------------------------------------------------------------------------------------ slicing
def slice_boxes(hw: tuple[int, int], size: tuple[int, int], overlap: float) -> np.ndarray:
    """Slices of an (H, W) image, (K, 4) int XYXY, as ``sahi.slicing.get_slice_bboxes(H, W, size[0], size[1],
    overlap_height_ratio=overlap, overlap_width_ratio=overlap)``: ``size`` is (slice h, slice w)."""
    height, width = hw
    slice_h, slice_w = size
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"tile overlap must be a fraction in [0, 1), got {overlap!r}")
    y_overlap, x_overlap = int(overlap * slice_h), int(overlap * slice_w)
    boxes = []
    y_min = y_max = 0
    while y_max < height:  # SAHI's loop, step for step
        x_min = x_max = 0
        y_max = y_min + slice_h
        while x_max < width:
            x_max = x_min + slice_w
            if y_max > height or x_max > width:
                x_max, y_max = min(width, x_max), min(height, y_max)
                x_min, y_min = max(0, x_max - slice_w), max(0, y_max - slice_h)
            boxes.append((x_min, y_min, x_max, y_max))
            x_min = x_max - x_overlap
        y_min = y_max - y_overlap
    return np.array(boxes, dtype=np.int64).reshape(-1, 4)


def input_side(backend: Any) -> int:
    """The largest square side the backend sees without shrinking it (a 1 x 1 image is scaled up as far as the
    processor goes): 800 for Grounding DINO, 1024 for SAM, 960 for OWLv2, 1008 for SAM 3."""
    return min(backend.input_size((1, 1)).resized)


def fitted_size(hw: tuple[int, int], limit: tuple[int, int]) -> tuple[int, int]:
    """(H, W) scaled down, aspect kept, to fit in ``limit`` (h, w); unchanged when it fits."""
    scale = min(1.0, limit[0] / hw[0], limit[1] / hw[1])
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def resized(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (h, w, 3), one bilinear antialiased resize (as reduced decoding does)."""
    if tuple(image.shape[:2]) == tuple(hw):
        return image
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.array(pil.resize((hw[1], hw[0]), Image.Resampling.BILINEAR, reducing_gap=3.0))  # writable


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ------------------------------------------------------------------------------------------------ merging
def overlap(a: np.ndarray, b: np.ndarray, metric: str = MERGE_METRIC) -> np.ndarray:
    """Row-wise overlap of XYXY boxes a (N, 4) and b (N, 4): ``"ios"`` (intersection / smaller area) or
    ``"iou"``; 0 where the denominator is 0 (degenerate boxes)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter = (np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
             * np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None))
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if metric == "ios":
        denominator = np.minimum(area_a, area_b)
    elif metric == "iou":
        denominator = area_a + area_b - inter
    else:
        raise InputError(f"overlap metric must be 'ios' or 'iou', got {metric!r}")
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator > 0)


def candidate_pairs(xyxy: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs i < j of boxes that may intersect (a superset of those that do): every pair for a
    few boxes, else the pairs sharing a cell of a grid as coarse as the median box."""
    n = len(xyxy)
    if n <= _SMALL:
        return np.stack(np.triu_indices(n, 1), axis=1)
    xyxy = np.asarray(xyxy, dtype=np.float64)
    cell = max(1.0, float(np.median(np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]))))
    corners = np.floor((xyxy - xyxy[:, :2].min(axis=0).repeat(2)[[0, 2, 1, 3]]) / cell).astype(np.int64)
    nx = np.maximum(1, corners[:, 2] - corners[:, 0] + 1)  # a degenerate box (x2 < x1) still has a cell
    ny = np.maximum(1, corners[:, 3] - corners[:, 1] + 1)
    counts = nx * ny
    owner = np.repeat(np.arange(n), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    cx, cy = corners[owner, 0] + k % nx[owner], corners[owner, 1] + k // nx[owner]
    key = cy * (int(cx.max()) + 1) + cx
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    pairs = [np.zeros((0, 2), dtype=np.int64)]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
        members = owner[start:end]
        i, j = np.triu_indices(end - start, 1)
        pairs.append(np.stack([members[i], members[j]], axis=1))
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return np.stack(np.divmod(np.unique(pairs[:, 0] * n + pairs[:, 1]), n), axis=1)


def greedy_nmm(xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, threshold: float = MERGE_THRESHOLD,
               metric: str = MERGE_METRIC) -> tuple[np.ndarray, list[list[int]]]:
    """SAHI's GREEDYNMM, class-aware (see the module docstring).

    Args:
        xyxy: (N, 4) boxes, XYXY pixels. scores: (N,). class_ids: (N,) int.
    Returns:
        (G, 4) float64 merged boxes and G groups of indices, each ``[keeper, merged...]`` (keeper: the group's
        highest score). Boxes dropped by the re-check against the growing union are in no group.
    """
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    n = len(xyxy)
    # score descending, ties by x1, y1, x2, y2 ascending (SAHI's order)
    order = np.lexsort((xyxy[:, 3], xyxy[:, 2], xyxy[:, 1], xyxy[:, 0], -np.asarray(scores, dtype=np.float64)))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    pairs = candidate_pairs(xyxy)
    pairs = pairs[np.asarray(class_ids)[pairs[:, 0]] == np.asarray(class_ids)[pairs[:, 1]]]
    pairs = pairs[overlap(xyxy[pairs[:, 0]], xyxy[pairs[:, 1]], metric) >= threshold]
    first = np.where(rank[pairs[:, 0]] < rank[pairs[:, 1]], pairs[:, 0], pairs[:, 1])  # the higher-ranked one
    later = pairs[:, 0] + pairs[:, 1] - first
    edges = np.lexsort((rank[later], first))
    first, later = first[edges], later[edges]
    bounds = np.searchsorted(first, np.arange(n + 1))
    suppressed = np.zeros(n, dtype=bool)
    boxes, groups = [], []
    for idx in order:
        if suppressed[idx]:
            continue
        candidates = later[bounds[idx] : bounds[idx + 1]]
        candidates = candidates[~suppressed[candidates]]
        suppressed[candidates] = True
        box, group = xyxy[idx].copy(), [int(idx)]
        for j in candidates:  # SAHI re-checks each against the union so far
            if overlap(box, xyxy[j], metric)[0] >= threshold:
                box = np.r_[np.minimum(box[:2], xyxy[j, :2]), np.maximum(box[2:], xyxy[j, 2:])]
                group.append(int(j))
        boxes.append(box)
        groups.append(group)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), groups


# ------------------------------------------------------------------------------------- segmenter windows
def crop_regions(xyxy: np.ndarray, hw: tuple[int, int], side: int) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Windows where the segmenter runs: [(region XYXY int, indices of the boxes it serves)], every box in one.

    Each box, with ``CONTEXT`` of its long side around it (clipped to the image), lies inside its window. A
    window is ``side`` x ``side`` (the segmenter's input, so it sees the pixels as they are), or the box's own
    size when larger, anchored at the top-left box not yet served and moved inside the image; it serves every
    box not yet served that fits inside and whose own window would not be smaller.
    """
    height, width = hw
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    margin = np.maximum(MIN_CONTEXT, CONTEXT * np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]))
    need = np.stack([np.floor(xyxy[:, 0] - margin), np.floor(xyxy[:, 1] - margin),
                     np.ceil(xyxy[:, 2] + margin), np.ceil(xyxy[:, 3] + margin)], axis=1)
    need = np.clip(need, 0, [width, height, width, height]).astype(np.int64)
    own_w = np.minimum(width, np.maximum(side, need[:, 2] - need[:, 0]))
    own_h = np.minimum(height, np.maximum(side, need[:, 3] - need[:, 1]))
    served = np.zeros(len(xyxy), dtype=bool)
    regions = []
    for i in np.lexsort((need[:, 0], need[:, 1])):  # top to bottom, then left to right
        if served[i]:
            continue
        x0, y0 = min(need[i, 0], width - own_w[i]), min(need[i, 1], height - own_h[i])
        x1, y1 = x0 + own_w[i], y0 + own_h[i]
        inside = (~served & (need[:, 0] >= x0) & (need[:, 1] >= y0) & (need[:, 2] <= x1) & (need[:, 3] <= y1)
                  & (own_w >= own_w[i]) & (own_h >= own_h[i]))
        inside[i] = True
        served |= inside
        regions.append(((int(x0), int(y0), int(x1), int(y1)), np.flatnonzero(inside)))
    return regions


# ----------------------------------------------------------------------------------------- compact masks
def compact_masks(masks: np.ndarray, offset: tuple[int, int], hw: tuple[int, int]) -> sv.CompactMask:
    """(N, h, w) bool masks whose top-left is pixel ``offset`` (x, y) of an (H, W) image -> ``CompactMask``
    (N, H, W), each mask stored within its own pixels' bounding box (an empty one as a 1 x 1 crop)."""
    masks = np.asarray(masks, dtype=bool)
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (N, h), (N, w)
    boxes = np.stack([cols.argmax(axis=1), rows.argmax(axis=1),  # inclusive, as CompactMask reads them
                      masks.shape[2] - 1 - cols[:, ::-1].argmax(axis=1),
                      masks.shape[1] - 1 - rows[:, ::-1].argmax(axis=1)], axis=1)
    boxes[~rows.any(axis=1)] = 0
    local = sv.CompactMask.from_dense(masks, boxes, image_shape=masks.shape[1:])
    return local.with_offset(int(offset[0]), int(offset[1]), new_image_shape=tuple(hw))


def union_masks(masks: sv.CompactMask, groups: Sequence[Sequence[int]]) -> sv.CompactMask:
    """One mask per group: the union of the group's masks (``CompactMask`` in, ``CompactMask`` out); only the
    union's bounding box is ever decoded."""
    hw = tuple(masks.shape[1:])
    boxes = masks.bbox_xyxy  # (N, 4) inclusive
    parts = []
    for group in groups:
        group = list(group)
        if len(group) == 1:
            parts.append(masks[group])
            continue
        x0, y0 = boxes[group, 0].min(), boxes[group, 1].min()
        x1, y1 = boxes[group, 2].max() + 1, boxes[group, 3].max() + 1
        region = np.zeros((1, y1 - y0, x1 - x0), dtype=bool)
        for m in group:
            crop = masks.crop(m)
            ox, oy = masks.offsets[m]
            region[0, oy - y0 : oy - y0 + crop.shape[0], ox - x0 : ox - x0 + crop.shape[1]] |= crop
        parts.append(compact_masks(region, (x0, y0), hw))
    if not parts:
        return compact_masks(np.zeros((0, 1, 1), dtype=bool), (0, 0), hw)
    return sv.CompactMask.merge(parts)
