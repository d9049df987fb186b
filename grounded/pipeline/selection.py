"""What the pipeline does to every backend's detections: NMS and the ``max_detections`` best.

Backends apply their thresholds (each as it can: Grounding DINO per token span, OWLv2 per query, SAM 3 per
phrase); everything after that is the same for all of them:

1. ``nms_on="box"``: NMS (``nms="class"`` per class, ``"agnostic"`` across classes, ``"none"``) on the
   boxes, before any mask is decoded; then the ``max_detections`` most confident are kept.
2. ``nms_on="mask"``: NMS on the masks once they exist, then ``max_detections`` again.
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from grounded.config import SegmentOptions
from grounded.models.detections import empty_detections  # noqa: F401  (grounded.io imports it from here)


def select_boxes(detections: sv.Detections, options: SegmentOptions) -> sv.Detections:
    """Step 1: box NMS when ``nms_on="box"``, then the ``max_detections`` best, most confident first."""
    if options.nms_on == "box":
        detections = apply_nms(detections, options, on_boxes=True)
    return top_k(detections, options.max_detections)


def select_masks(detections: sv.Detections, options: SegmentOptions) -> sv.Detections:
    """Step 2: mask NMS when ``nms_on="mask"``, then the ``max_detections`` best (a no-op otherwise)."""
    if options.nms_on != "mask":
        return detections
    return top_k(apply_nms(detections, options), options.max_detections)


def apply_nms(detections: sv.Detections, options: SegmentOptions, on_boxes: bool = False) -> sv.Detections:
    """NMS on masks when present (unless ``on_boxes``), else boxes; per class or across classes as
    ``options.nms`` says. Kept detections stay in their order."""
    if options.nms == "none" or len(detections) < 2:
        return detections
    agnostic = options.nms == "agnostic"
    if on_boxes and detections.mask is not None:  # a concept segmenter's masks come with its boxes
        boxes = sv.Detections(xyxy=detections.xyxy, confidence=detections.confidence, class_id=detections.class_id,
                              data={"row": np.arange(len(detections))})
        return detections[boxes.with_nms(threshold=options.nms_iou, class_agnostic=agnostic).data["row"]]
    return detections.with_nms(threshold=options.nms_iou, class_agnostic=agnostic)


def top_k(detections: sv.Detections, k: int) -> sv.Detections:
    """The ``k`` most confident detections, most confident first (stable for ties)."""
    order = np.argsort(-detections.confidence, kind="stable")[:k]
    return detections[order]
