"""From per-pixel scores to instances: the student's ``sv.Detections``, like the teacher's.

A semantic student predicts one class per pixel (the arg-max map). Two ways turn it into instances:

- **connected components** (``boundary=None``): each 8-connected region of a class is one instance. Touching
  objects of one class merge into one: the known limit of the approach.
- **boundary-aware** (``boundary`` given, the student's boundary head, contour-aware as in DCAN, Chen et al.
  2016): within each class region, pixels whose boundary probability is at least ``boundary_threshold`` are
  cut out; the remaining *cores* are the connected components; every cut pixel then rejoins the nearest core
  of its region (Euclidean distance transform). Two touching wheels whose shared contour the head marks
  come out as two instances covering the whole region between them. A region that is all boundary stays one
  instance.

Each instance becomes one detection with

- ``mask``: (H, W) bool;
- ``xyxy``: the tight box around it, XYXY pixels, ``x2``/``y2`` exclusive (one past the last pixel);
- ``confidence``: the mean probability of its class over its pixels, in [0, 1];
- ``class_id``: 0-based (background, channel 0 of the student, never becomes an instance);
- ``data["class_name"]``.

Instances smaller than ``min_area`` pixels are dropped (speckle). Detections are sorted by confidence,
highest first. :func:`instance_boundaries` makes the boundary head's training target from instance masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def _empty(height: int, width: int) -> sv.Detections:
    empty = sv.Detections.empty()
    empty.mask = np.zeros((0, height, width), dtype=bool)
    empty.confidence = np.zeros(0, dtype=np.float32)
    empty.class_id = np.zeros(0, dtype=int)
    empty.data = {"class_name": np.array([], dtype=str)}
    return empty


def split_region(region: np.ndarray, cut: np.ndarray | None) -> tuple[np.ndarray, int]:
    """Instances of one class region (H, W) bool: (labels int32 (H, W), 0 outside, count).

    ``cut`` (H, W) bool marks boundary pixels; without it (or when it would erase the region) the labels are
    the region's connected components.
    """
    if cut is None:
        return ndimage.label(region, structure=_EIGHT)
    cores, count = ndimage.label(region & ~cut, structure=_EIGHT)
    if count == 0:
        return ndimage.label(region, structure=_EIGHT)
    # every region pixel takes the label of its nearest core pixel
    _, (iy, ix) = ndimage.distance_transform_edt(cores == 0, return_indices=True)
    labels = np.where(region, cores[iy, ix], 0).astype(np.int32)
    # parts of the region no core reaches through the region itself stay apart: relabel connected pieces
    out, total = np.zeros_like(labels), 0
    for k in range(1, count + 1):
        pieces, n = ndimage.label(labels == k, structure=_EIGHT)
        out[pieces > 0] = pieces[pieces > 0] + total
        total += n
    return out, total


def label_map_to_detections(
    label_map: np.ndarray,
    class_names: Sequence[str],
    probs: np.ndarray | None = None,
    min_area: int = 16,
    ignore_value: int | None = 255,
    boundary: np.ndarray | None = None,
    boundary_threshold: float = 0.5,
) -> sv.Detections:
    """Semantic map (H, W) (0 = background, c + 1 = class c) -> instances as ``sv.Detections``.

    ``probs`` (K + 1, H, W), if given, supplies the confidences; without it every confidence is 1.0
    (ground truth). Pixels equal to ``ignore_value`` belong to no instance. ``boundary`` (H, W) in [0, 1]:
    boundary probabilities that split touching instances of one class (see the module docstring).
    """
    height, width = label_map.shape
    cut = boundary >= boundary_threshold if boundary is not None else None
    masks, boxes, scores, classes = [], [], [], []
    for value in np.unique(label_map):
        if value == 0 or (ignore_value is not None and value == ignore_value) or value > len(class_names):
            continue
        region = label_map == value
        (ys, xs), = ndimage.find_objects(region.astype(np.int8))  # work inside the region's box
        components, _ = split_region(region[ys, xs], None if cut is None else cut[ys, xs])
        for k, local_box in enumerate(ndimage.find_objects(components), start=1):
            if local_box is None:
                continue
            local = components[local_box] == k
            area = int(local.sum())
            if area < min_area:
                continue
            box = (slice(ys.start + local_box[0].start, ys.start + local_box[0].stop),
                   slice(xs.start + local_box[1].start, xs.start + local_box[1].stop))
            mask = np.zeros((height, width), dtype=bool)
            mask[box] = local
            masks.append(mask)
            boxes.append([box[1].start, box[0].start, box[1].stop, box[0].stop])
            scores.append(float(probs[value][box][local].mean()) if probs is not None else 1.0)
            classes.append(int(value) - 1)
    if not masks:
        return _empty(height, width)
    order = np.argsort(-np.asarray(scores), kind="stable")
    class_id = np.asarray(classes, dtype=int)[order]
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32)[order],
        mask=np.stack(masks)[order],
        confidence=np.asarray(scores, dtype=np.float32)[order],
        class_id=class_id,
        data={"class_name": np.array([class_names[c] for c in class_id])},
    )


def probs_to_detections(probs: np.ndarray, class_names: Sequence[str], min_area: int = 16,
                        boundary: np.ndarray | None = None, boundary_threshold: float = 0.5) -> sv.Detections:
    """Class probabilities (K + 1, H, W) (softmax over channel 0) [+ boundary (H, W)] -> instances."""
    return label_map_to_detections(probs.argmax(0).astype(np.int32), class_names, probs, min_area, ignore_value=None,
                                   boundary=boundary, boundary_threshold=boundary_threshold)


def instance_boundaries(instance_ids: np.ndarray, width: int = 1) -> np.ndarray:
    """Instance-id map (H, W) (0 = no instance) -> (H, W) bool: pixels of an instance within ``width`` pixels
    (chessboard distance) of another instance. The boundary head's target: where touching objects meet."""
    size = 2 * width + 1
    ids = instance_ids.astype(np.int32)
    above = ndimage.maximum_filter(ids, size=size, mode="nearest")
    big = int(ids.max()) + 1
    below = ndimage.minimum_filter(np.where(ids == 0, big, ids), size=size, mode="nearest")
    return (ids > 0) & ((above > ids) | (below < ids))
