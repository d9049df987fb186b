"""Per-image records: the streamed, resumable state of a labelling run.

Each finished image has one JSON file ``OUT/records/<path relative to the images root>.json``, written
atomically (temporary file + ``os.replace``) as soon as the image is done, so a crash leaves only whole
records. Masks are COCO RLE strings; nothing else holds them, so memory stays flat however many images
a run has. A record::

    {"file": "sub/a.jpg", "height": 480, "width": 640,
     "detections": [{"class_id": 0, "class_name": "car", "phrase": "car", "confidence": 0.91,
                     "mask_score": 0.97, "xyxy": [x0, y0, x1, y1], "rle": {"size": [480, 640], "counts": "..."}}]}

An image that could not be read gets ``{"file": ..., "error": "reason"}`` instead; such images are tried
again on the next run. An empty ``detections`` list is a negative image and stays in the dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded.formats.files import atomic_write_text
from grounded.utils.images import find_images
from grounded.utils.masks import mask_to_rle, rle_to_mask

RECORDS_DIR = "records"


def image_relatives(root: Path, out: Path) -> list[str]:
    """Images below ``root`` as sorted POSIX paths relative to it, leaving out anything inside ``out``
    (a run written into its own image folder must not label its previews and exported image links)."""
    root, out = Path(os.path.abspath(root)), Path(os.path.abspath(out))
    return [p.relative_to(root).as_posix() for p in find_images(root) if not p.is_relative_to(out)]


def record_path(out: Path, relative: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{relative}.json"


def _column(detections: sv.Detections, key: str, k: int, default: Any) -> Any:
    values = detections.data.get(key) if detections.data else None
    if values is None or len(values) <= k:
        return default
    value = values[k]
    return value.item() if isinstance(value, np.generic) else value


def detections_to_record(relative: str, height: int, width: int, detections: sv.Detections) -> dict[str, Any]:
    """One image's ``sv.Detections`` (XYXY pixels, (N, H, W) bool masks) -> a JSON-able record."""
    items = []
    for k in range(len(detections)):
        item: dict[str, Any] = {
            "class_id": int(detections.class_id[k]),
            "class_name": str(_column(detections, "class_name", k, "")),
            "phrase": str(_column(detections, "phrase", k, "")),
            "confidence": None if detections.confidence is None else round(float(detections.confidence[k]), 6),
            "mask_score": None if _column(detections, "mask_score", k, None) is None
            else round(float(_column(detections, "mask_score", k, 0.0)), 6),
            "xyxy": [round(float(v), 3) for v in detections.xyxy[k]],
        }
        if detections.mask is not None:
            item["rle"] = mask_to_rle(detections.mask[k])
        items.append(item)
    return {"file": relative, "height": int(height), "width": int(width), "detections": items}


def record_to_detections(record: dict[str, Any], with_masks: bool = True) -> sv.Detections:
    """A record -> ``sv.Detections``; masks decoded only if ``with_masks`` (and the record has them)."""
    items = record["detections"]
    height, width = record["height"], record["width"]
    has_masks = with_masks and all("rle" in item for item in items)
    if not items:
        return sv.Detections(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            mask=np.zeros((0, height, width), dtype=bool) if with_masks else None,
            confidence=np.zeros(0, dtype=np.float32),
            class_id=np.zeros(0, dtype=int),
            data={"class_name": np.array([], dtype=str), "phrase": np.array([], dtype=str)},
        )
    return sv.Detections(
        xyxy=np.asarray([item["xyxy"] for item in items], dtype=np.float32),
        mask=np.stack([rle_to_mask(item["rle"]) for item in items]) if has_masks else None,
        confidence=np.asarray([item["confidence"] or 0.0 for item in items], dtype=np.float32),
        class_id=np.asarray([item["class_id"] for item in items], dtype=int),
        data={
            "class_name": np.array([item["class_name"] for item in items]),
            "phrase": np.array([item["phrase"] for item in items]),
        },
    )


def write_record(out: Path, record: dict[str, Any]) -> None:
    atomic_write_text(record_path(out, record["file"]), json.dumps(record, sort_keys=True) + "\n")


def read_record(out: Path, relative: str) -> dict[str, Any] | None:
    """The record of one image, or None when the image has not been finished."""
    path = record_path(out, relative)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def remove_stale_temporaries(out: Path) -> int:
    """Delete temporary files a killed run left behind; return how many."""
    count = 0
    for tmp in (Path(out) / RECORDS_DIR).rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        count += 1
    return count
