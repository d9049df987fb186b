"""Pictures of detections, drawn with supervision's annotators (masks, boxes, labels)."""

from __future__ import annotations

import numpy as np
import supervision as sv
from PIL import Image


def labels_for(detections: sv.Detections) -> list[str]:
    """``"class 0.87"`` per detection (class name, else class id; confidence when known)."""
    names = detections.data.get("class_name")
    labels = []
    for i in range(len(detections)):
        name = str(names[i]) if names is not None else str(detections.class_id[i])
        conf = f" {detections.confidence[i]:.2f}" if detections.confidence is not None else ""
        labels.append(name + conf)
    return labels


def annotate(image: np.ndarray, detections: sv.Detections, *, boxes: bool = True, labels: bool = True) -> Image.Image:
    """Draw masks (filled, translucent), boxes and labels on an RGB (H, W, 3) uint8 image; colours by class."""
    scene = Image.fromarray(image)
    if len(detections) == 0:
        return scene
    lookup = sv.ColorLookup.CLASS if detections.class_id is not None else sv.ColorLookup.INDEX
    if detections.mask is not None:
        scene = sv.MaskAnnotator(opacity=0.45, color_lookup=lookup).annotate(scene, detections)
    if boxes:
        thickness = max(1, round(max(image.shape[:2]) / 400))
        scene = sv.BoxAnnotator(thickness=thickness, color_lookup=lookup).annotate(scene, detections)
    if labels:
        scale = max(0.4, max(image.shape[:2]) / 1600)
        scene = sv.LabelAnnotator(text_scale=scale, color_lookup=lookup).annotate(
            scene, detections, labels=labels_for(detections)
        )
    return scene
