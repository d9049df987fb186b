"""From per-pixel scores to instances: the student's ``sv.Detections``, like the teacher's.

A semantic student predicts one class per pixel (the arg-max map). Two ways turn it into instances:

- **connected components** (``boundary=None``): each 8-connected region of a class is one instance. Touching
  objects of one class merge into one: the known limit of the approach.
- **boundary-aware** (``boundary`` given, the student's boundary head, contour-aware as in DCAN, Chen et al.
  2016): within each class region, pixels whose boundary probability is at least ``boundary_threshold`` are
  cut out; the remaining *cores* (connected, at least ``min_area`` pixels and ``core_fraction`` of their
  connected region) seed the instances; every other pixel of the region joins its nearest core (Euclidean
  distance transform). The defaults (threshold 0.7, fraction 0.2) were the best of those tried on car-parts
  held-out photos, where touching parts of one class are rare and connected components still score a higher
  mask AP (README); the split is for objects that do touch. Two touching wheels whose shared contour the head marks
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


def split_region(region: np.ndarray, cut: np.ndarray | None, min_core: int = 1,
                 core_fraction: float = 0.0) -> tuple[np.ndarray, int]:
    """Instances of one class region (H, W) bool: (labels int32 (H, W), 0 outside, count).

    ``cut`` (H, W) bool marks boundary pixels; without it (or when it would erase the region) the labels are
    the region's connected components. Cores smaller than ``min_core`` pixels, or than ``core_fraction`` of
    their connected component of the region, are dropped (their pixels join the nearest larger core).
    """
    components, n = ndimage.label(region, structure=_EIGHT)
    if cut is None:
        return components, n
    cores, count = ndimage.label(region & ~cut, structure=_EIGHT)
    if count and (min_core > 1 or core_fraction > 0):
        sizes = np.bincount(cores.ravel(), minlength=count + 1)
        component_sizes = np.bincount(components.ravel(), minlength=n + 1)
        owner = np.zeros(count + 1, dtype=np.int64)  # the region component each core lies in
        owner[cores.ravel()] = components.ravel()
        small = (sizes < min_core) | (sizes < core_fraction * component_sizes[owner])
        small[0] = False
        if not small[1:].all():
            cores[small[cores]] = 0
    if not cores.any():
        return components, n
    # every region pixel takes the label of its nearest core pixel; a connected component of the region and
    # a core together name one instance (so pieces that only meet across the background stay apart)
    _, (iy, ix) = ndimage.distance_transform_edt(cores == 0, return_indices=True)
    key = components.astype(np.int64) * (count + 1) + cores[iy, ix]
    labels = np.zeros(region.shape, dtype=np.int32)
    unique, inverse = np.unique(key[region], return_inverse=True)
    labels[region] = inverse.reshape(-1) + 1
    return labels, len(unique)


def label_map_to_detections(
    label_map: np.ndarray,
    class_names: Sequence[str],
    probs: np.ndarray | None = None,
    min_area: int = 16,
    ignore_value: int | None = 255,
    boundary: np.ndarray | None = None,
    boundary_threshold: float = 0.7,
    core_fraction: float = 0.2,
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
        components, _ = split_region(region[ys, xs], None if cut is None else cut[ys, xs], min_area, core_fraction)
        for k, local_box in enumerate(ndimage.find_objects(components), start=1):
            if local_box is None:
                continue
            local = components[local_box] == k
            area = int(local.sum())
            if area < min_area:
                continue
            box = (slice(ys.start + local_box[0].start, ys.start + local_box[0].stop),
                   slice(xs.start + local_box[1].start, xs.start + local_box[1].stop))
            masks.append((box, local))  # full-size masks are filled once, below
            boxes.append([box[1].start, box[0].start, box[1].stop, box[0].stop])
            scores.append(float(probs[value][box][local].mean()) if probs is not None else 1.0)
            classes.append(int(value) - 1)
    if not masks:
        return _empty(height, width)
    order = np.argsort(-np.asarray(scores), kind="stable")
    class_id = np.asarray(classes, dtype=int)[order]
    full = np.zeros((len(masks), height, width), dtype=bool)
    for row, k in enumerate(order):
        box, local = masks[k]
        full[row][box] = local
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32)[order],
        mask=full,
        confidence=np.asarray(scores, dtype=np.float32)[order],
        class_id=class_id,
        data={"class_name": np.array([class_names[c] for c in class_id])},
    )


def probs_to_detections(probs: np.ndarray, class_names: Sequence[str], min_area: int = 16,
                        boundary: np.ndarray | None = None, boundary_threshold: float = 0.7) -> sv.Detections:
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
