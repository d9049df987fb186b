"""YOLO labels (detect and segment) and ``data.yaml``, the layout Ultralytics trainers read.

One text file per image, one line per object, coordinates normalised to [0, 1] by the image width/height:

- detect: ``class cx cy w h`` (from the box);
- segment: ``class x1 y1 x2 y2 ...`` (the mask's outer contour through pixel centres, the convention of
  ``cv2.fillPoly``, which YOLO trainers and supervision use to redraw it). YOLO holds one polygon
  per object and no holes: holes are filled, and a mask with several parts becomes one polygon whose parts
  are joined by zero-width bridges (as Ultralytics' own COCO converter does), largest part first; specks
  (parts under 1% of the mask, or beyond the 16 largest) are left out. Use the COCO export when holes or
  specks matter. An object without a mask falls back to its box corners; one whose mask is empty has no line.

Layout written by :func:`grounded.label.export.export_run`::

    yolo/data.yaml                 # train: images/train, val: images/val, nc, names {0: car, ...}
    yolo/images/train/x.jpg        # links to the original images
    yolo/labels/train/x.txt        # an empty file for an image without objects (a negative)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import supervision as sv
import yaml
from supervision.dataset.formats.yolo import yolo_annotations_to_detections

from grounded.errors import InputError, quote
from grounded.formats.checks import check_points
from grounded.formats.files import atomic_write_text
from grounded.formats.polygons import bridge_outlines

MIN_PART = 0.01  # YOLO segments leave out parts smaller than 1% of the object's mask ...
MAX_PARTS = 16  # ... and keep at most its 16 largest parts


def mask_to_segment(mask: np.ndarray) -> np.ndarray | None:
    """(H, W) bool -> one YOLO polygon, (K >= 3, 2) float XY in pixel-centre coordinates; None if empty.

    Outer contours (OpenCV, pixel centres, so ``cv2.fillPoly`` in YOLO trainers and supervision redraws the
    same pixels); holes are dropped; parts beyond :data:`MAX_PARTS` or under :data:`MIN_PART` of the area
    are left out, the others bridged into one polygon (:func:`grounded.formats.polygons.bridge_outlines`).
    """
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    # pixels inside a pixel-centre contour ~ its area + half its perimeter + 1 (Pick's theorem)
    sizes = [cv2.contourArea(c) + cv2.arcLength(c, True) / 2 + 1 for c in contours]
    order = sorted(range(len(contours)), key=lambda i: (-sizes[i], i))[:MAX_PARTS]
    total = float(np.count_nonzero(mask))
    kept = [contours[i].reshape(-1, 2) for i in order if sizes[i] >= MIN_PART * total] or [contours[order[0]].reshape(-1, 2)]
    polygon = bridge_outlines(kept).astype(np.float64)
    if len(polygon) < 3:  # a one- or two-pixel object: YOLO needs three vertices
        polygon = np.concatenate([polygon, polygon[-1:].repeat(3 - len(polygon), axis=0)])
    return polygon


def detections_to_yolo_lines(detections: sv.Detections, height: int, width: int, segmentation: bool = False,
                             masks: Sequence[np.ndarray] | None = None) -> list[str]:
    """One line per detection (see the module docstring); boxes are XYXY pixels, clipped to the image.

    Segment lines trace ``masks`` (N (H, W) bool masks read one at a time; default ``detections.mask``); a
    detection whose mask is empty gets no segment line (there is no outline to write).
    """
    lines = []
    scale = np.array([width, height], dtype=np.float64)
    masks = detections.mask if masks is None else masks
    for k in range(len(detections)):
        x0, y0, x1, y1 = np.clip(detections.xyxy[k].astype(np.float64), 0, [width, height, width, height])
        class_id = int(detections.class_id[k])
        if segmentation:
            if masks is not None:
                points = mask_to_segment(masks[k])
                if points is None:
                    continue
            else:
                points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            values = (points / scale).reshape(-1)
        else:
            values = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
        lines.append(" ".join([str(class_id)] + [f"{v:.6f}" for v in values]))
    return lines


def save_yolo_labels(path: str | Path, detections: sv.Detections, height: int, width: int, segmentation: bool = False,
                     masks: Sequence[np.ndarray] | None = None) -> None:
    """Write one image's label file atomically (empty for no detections); ``masks`` as in
    :func:`detections_to_yolo_lines`."""
    lines = detections_to_yolo_lines(detections, height, width, segmentation, masks)
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def load_yolo_labels(path: str | Path, height: int, width: int, with_masks: bool = False) -> sv.Detections:
    """Read one label file back as ``sv.Detections`` (XYXY pixels), through supervision's parser."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    return yolo_annotations_to_detections(lines=lines, resolution_wh=(width, height), with_masks=with_masks)


def parse_yolo_line(line: str, num_classes: int) -> tuple[int, np.ndarray] | None:
    """One label line -> (class id, (K, 2) float XY normalised to [0, 1]); None for a blank line.

    ``class cx cy w h`` (a box, returned as its 4 corners) or ``class x1 y1 ... xk yk`` (k >= 3). InputError
    saying what is wrong for anything else: a class that is not an integer or is outside ``num_classes``,
    an odd number of coordinates, non-numbers, NaN / infinity, a negative box size, or a point more than
    one image size outside the image (:mod:`grounded.formats.checks`), all found before anything is drawn.
    """
    values = line.split()
    if not values:
        return None
    try:
        cls = int(values[0])
    except ValueError:
        raise InputError(f"class {quote(values[0], 40)} is not an integer") from None
    if not 0 <= cls < num_classes:
        raise InputError(f"class {cls} is outside the {num_classes} class names")
    try:
        coords = [float(v) for v in values[1:]]
    except ValueError:
        raise InputError(f"expected 'class x y ...' numbers, got {quote(line, 80)}") from None
    if len(coords) == 4:  # a box: centre x, centre y, width, height
        cx, cy, w, h = coords
        if w < 0 or h < 0:
            raise InputError(f"box {quote(line, 80)} has a negative width or height")
        coords = [cx - w / 2, cy - h / 2, cx + w / 2, cy - h / 2, cx + w / 2, cy + h / 2, cx - w / 2, cy + h / 2]
    elif len(coords) < 6 or len(coords) % 2:
        raise InputError(f"{len(coords)} coordinates: expected 4 (a box) or an even number >= 6 (a polygon)")
    problem = check_points(coords, 1, 1, what="coordinates")
    if problem:
        raise InputError(problem)
    return cls, np.asarray(coords, dtype=np.float64).reshape(-1, 2)


def save_data_yaml(path: str | Path, classes: list[str], splits: list[str]) -> None:
    """``data.yaml`` with image folders relative to its own folder (Ultralytics resolves them there)."""
    data: dict = {split: f"images/{split}" for split in splits}
    data["nc"] = len(classes)
    data["names"] = {k: name for k, name in enumerate(classes)}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
