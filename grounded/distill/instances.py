"""From per-pixel class scores to instances: the student's ``sv.Detections``, like the teacher's.

A semantic student predicts one class per pixel. Instances are the connected components of each class in
the arg-max map (8-connectivity, through ``scipy.ndimage.label``); each becomes one detection with

- ``mask``: the component, (H, W) bool;
- ``xyxy``: the tight box around it, XYXY pixels, ``x2``/``y2`` exclusive (one past the last pixel);
- ``confidence``: the mean probability of its class over its pixels, in [0, 1];
- ``class_id``: 0-based (background, channel 0 of the student, never becomes an instance);
- ``data["class_name"]``.

Components smaller than ``min_area`` pixels are dropped (speckle). Detections are sorted by confidence,
highest first. Touching objects of one class merge into one instance: the known limit of the approach.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def label_map_to_detections(
    label_map: np.ndarray,
    class_names: Sequence[str],
    probs: np.ndarray | None = None,
    min_area: int = 16,
    ignore_value: int | None = 255,
) -> sv.Detections:
    """Semantic map (H, W) (0 = background, c + 1 = class c) -> instances as ``sv.Detections``.

    ``probs`` (K + 1, H, W), if given, supplies the confidences; without it every confidence is 1.0
    (ground truth). Pixels equal to ``ignore_value`` belong to no instance.
    """
    height, width = label_map.shape
    masks, boxes, scores, classes = [], [], [], []
    for value in np.unique(label_map):
        if value == 0 or (ignore_value is not None and value == ignore_value) or value > len(class_names):
            continue
        components, count = ndimage.label(label_map == value, structure=_EIGHT)
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            if box is None:
                continue
            local = components[box] == k
            area = int(local.sum())
            if area < min_area:
                continue
            mask = np.zeros((height, width), dtype=bool)
            mask[box] = local
            masks.append(mask)
            boxes.append([box[1].start, box[0].start, box[1].stop, box[0].stop])
            scores.append(float(probs[value][box][local].mean()) if probs is not None else 1.0)
            classes.append(int(value) - 1)
    if not masks:
        empty = sv.Detections.empty()
        empty.mask = np.zeros((0, height, width), dtype=bool)
        empty.confidence = np.zeros(0, dtype=np.float32)
        empty.class_id = np.zeros(0, dtype=int)
        empty.data = {"class_name": np.array([], dtype=str)}
        return empty
    order = np.argsort(-np.asarray(scores), kind="stable")
    class_id = np.asarray(classes, dtype=int)[order]
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32)[order],
        mask=np.stack(masks)[order],
        confidence=np.asarray(scores, dtype=np.float32)[order],
        class_id=class_id,
        data={"class_name": np.array([class_names[c] for c in class_id])},
    )


def probs_to_detections(probs: np.ndarray, class_names: Sequence[str], min_area: int = 16) -> sv.Detections:
    """Class probabilities (K + 1, H, W) (softmax over channel 0) -> instances (see the module docstring)."""
    return label_map_to_detections(probs.argmax(0).astype(np.int32), class_names, probs, min_area, ignore_value=None)
