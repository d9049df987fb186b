"""YOLO labels (detect and segment) and ``data.yaml``, the layout Ultralytics trainers read.

One text file per image, one line per object, coordinates normalised to [0, 1] by the image width/height:

- detect: ``class cx cy w h`` (from the box);
- segment: ``class x1 y1 x2 y2 ...`` (the mask's outline, traced along pixel edges). YOLO holds one polygon
  per object and no holes: a mask with several parts is written as its largest part, and holes are filled.
  Use the COCO export when holes or parts matter. An object without a mask falls back to its box corners.

Layout written by :func:`grounded.label.export.export_run`::

    yolo/data.yaml                 # train: images/train, val: images/val, nc, names {0: car, ...}
    yolo/images/train/x.jpg        # links to the original images
    yolo/labels/train/x.txt        # an empty file for an image without objects (a negative)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv
import yaml
from supervision.dataset.formats.yolo import yolo_annotations_to_detections

from grounded.formats.files import atomic_write_text
from grounded.formats.polygons import largest_part_outline


def detections_to_yolo_lines(detections: sv.Detections, height: int, width: int, segmentation: bool = False) -> list[str]:
    """One line per detection (see the module docstring); boxes are XYXY pixels, clipped to the image."""
    lines = []
    scale = np.array([width, height], dtype=np.float64)
    for k in range(len(detections)):
        x0, y0, x1, y1 = np.clip(detections.xyxy[k].astype(np.float64), 0, [width, height, width, height])
        class_id = int(detections.class_id[k])
        if segmentation:
            outline = largest_part_outline(detections.mask[k]) if detections.mask is not None else None
            points = outline if outline is not None else np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            values = (points / scale).reshape(-1)
        else:
            values = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
        lines.append(" ".join([str(class_id)] + [f"{v:.6f}" for v in values]))
    return lines


def save_yolo_labels(path: str | Path, detections: sv.Detections, height: int, width: int, segmentation: bool = False) -> None:
    """Write one image's label file atomically (empty for no detections)."""
    lines = detections_to_yolo_lines(detections, height, width, segmentation)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def load_yolo_labels(path: str | Path, height: int, width: int, with_masks: bool = False) -> sv.Detections:
    """Read one label file back as ``sv.Detections`` (XYXY pixels), through supervision's parser."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    return yolo_annotations_to_detections(lines=lines, resolution_wh=(width, height), with_masks=with_masks)


def save_data_yaml(path: str | Path, classes: list[str], splits: list[str]) -> None:
    """``data.yaml`` with image folders relative to its own folder (Ultralytics resolves them there)."""
    data: dict = {split: f"images/{split}" for split in splits}
    data["nc"] = len(classes)
    data["names"] = {k: name for k, name in enumerate(classes)}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
