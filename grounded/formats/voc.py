"""Pascal VOC XML: one file per image with its size and one ``<object>`` (name, box) per detection.

Boxes use the VOC devkit convention that supervision reads and writes: 1-based inclusive pixel indices,
``xmin = round(x0) + 1``, ``xmax = round(x1)`` for an XYXY pixel box ``(x0, y0, x1, y1)``. Masks are not
stored (VOC XML has no instance masks; use the COCO or mask-PNG export).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, fromstring, indent, tostring

import numpy as np
import supervision as sv
from supervision.dataset.formats.pascal_voc import detections_from_xml_obj

from grounded.formats.files import atomic_write_bytes


def _text(parent: Element, tag: str, value: object) -> Element:
    element = SubElement(parent, tag)
    element.text = str(value)
    return element


def detections_to_voc_xml(detections: sv.Detections, classes: list[str], file_name: str, height: int, width: int) -> bytes:
    """One image's VOC XML (UTF-8 bytes); object names are ``classes[class_id]``."""
    root = Element("annotation")
    _text(root, "folder", "JPEGImages")
    _text(root, "filename", file_name)
    size = SubElement(root, "size")
    _text(size, "width", width)
    _text(size, "height", height)
    _text(size, "depth", 3)
    _text(root, "segmented", 0)
    for k in range(len(detections)):
        x0, y0, x1, y1 = np.clip(detections.xyxy[k].astype(np.float64), 0, [width, height, width, height])
        obj = SubElement(root, "object")
        _text(obj, "name", classes[int(detections.class_id[k])])
        _text(obj, "pose", "Unspecified")
        _text(obj, "truncated", 0)
        _text(obj, "difficult", 0)
        box = SubElement(obj, "bndbox")
        xmin, ymin = int(round(x0)) + 1, int(round(y0)) + 1
        _text(box, "xmin", xmin)
        _text(box, "ymin", ymin)
        _text(box, "xmax", max(int(round(x1)), xmin))
        _text(box, "ymax", max(int(round(y1)), ymin))
    indent(root)
    return tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def save_voc(path: str | Path, detections: sv.Detections, classes: list[str], file_name: str, height: int, width: int) -> None:
    """Write one image's VOC XML atomically."""
    atomic_write_bytes(path, detections_to_voc_xml(detections, classes, file_name, height, width))


def load_voc(path: str | Path, classes: list[str]) -> sv.Detections:
    """Read one VOC XML back as ``sv.Detections`` (XYXY pixels; ``class_id`` indexes ``classes``)."""
    root = fromstring(Path(path).read_bytes())
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    detections, _ = detections_from_xml_obj(root, list(classes), (width, height))
    return detections
