"""Helpers every backend uses to build its ``sv.Detections``: box format, per-class thresholds, empty results.

Boxes leave a backend as **XYXY in pixels of the original image**, float32, clipped to the image;
:func:`cxcywh_to_xyxy` converts the normalised centre format most DETR-style heads predict.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from grounded.config import SegmentOptions
from grounded.ontology import Ontology


def cxcywh_to_xyxy(boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Normalised cxcywh (N, 4) -> XYXY pixels (N, 4) of an (H, W) image, clipped to the image."""
    h, w = image_hw
    cx, cy, bw, bh = boxes.T
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1) * np.array([w, h, w, h])
    return np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)


def class_thresholds(ontology: Ontology, options: SegmentOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per class id: (box thresholds, text thresholds), float32 arrays of length ``len(ontology.classes)``.

    Each comes from ``options.class_*_thresholds`` (by class name), else the ontology's class, else the
    ontology's defaults, else ``options.box_threshold`` / ``options.text_threshold``.
    """
    box, text = [], []
    for class_id, cls in enumerate(ontology.classes):
        box.append(options.class_box_thresholds.get(cls.name, ontology.box_threshold_for(class_id, options.box_threshold)))
        text.append(options.class_text_thresholds.get(cls.name, ontology.text_threshold_for(class_id, options.text_threshold)))
    return np.array(box, dtype=np.float32), np.array(text, dtype=np.float32)


def empty_detections(image_hw: tuple[int, int] | None = None) -> sv.Detections:
    """Zero detections with every field present (mask (0, H, W) when the image size is known)."""
    mask = None if image_hw is None else np.zeros((0, *image_hw), dtype=bool)
    return sv.Detections(
        xyxy=np.zeros((0, 4), dtype=np.float32),
        mask=mask,
        confidence=np.zeros(0, dtype=np.float32),
        class_id=np.zeros(0, dtype=int),
        data={"class_name": np.array([], dtype=str), "phrase": np.array([], dtype=str),
              "mask_score": np.zeros(0, dtype=np.float32)},
    )


def labelled_boxes(xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, phrases: list[str],
                   ontology: Ontology) -> sv.Detections:
    """A Detector's per-image result: (N, 4) XYXY pixels, (N,) scores, (N,) class ids and the N phrases
    that produced them -> ``sv.Detections`` with ``class_name`` and ``phrase``, most confident first
    (a stable sort: ties keep the order given)."""
    confidence = np.asarray(confidence, dtype=np.float32)
    order = np.argsort(-confidence, kind="stable")
    class_id = np.asarray(class_id, dtype=int)[order]
    return sv.Detections(
        xyxy=np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)[order],
        confidence=confidence[order],
        class_id=class_id,
        data={"class_name": np.array([ontology.classes[c].name for c in class_id], dtype=str),
              "phrase": np.array(list(phrases), dtype=str)[order] if len(order) else np.array([], dtype=str)},
    )
