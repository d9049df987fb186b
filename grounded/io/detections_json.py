"""Detections <-> JSON: one object per image, masks as COCO compressed RLE, boxes XYXY in pixels.

Format (``grounded segment`` and ``grounded predict`` write one such file per image)::

    {
      "image": "truck.jpg", "width": 1800, "height": 1200,
      "detections": [
        {"bbox_xyxy": [x1, y1, x2, y2], "class_id": 0, "class_name": "wheel", "phrase": "a wheel",
         "confidence": 0.61, "mask_score": 0.93, "area": 5231,
         "mask": {"size": [1200, 1800], "counts": "..."}}
      ]
    }

Any other per-detection column of ``detections.data`` (numbers, strings or booleans, e.g. CLIP
verification's ``class_name_detector``, ``verify`` and ``clip_prob``) is written under its own key in each
detection. ``detections_from_json`` reverses it all (masks decoded with pycocotools).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded.utils.masks import mask_to_rle, rle_to_mask

_FIELDS = {"bbox_xyxy", "class_id", "class_name", "phrase", "confidence", "mask_score", "area", "mask"}


def _extra_columns(detections: sv.Detections) -> list[str]:
    """Per-detection ``data`` columns of scalars beyond the standard ones, in a stable order."""
    return sorted(
        key for key, value in detections.data.items()
        if key not in _FIELDS and np.ndim(value) == 1 and len(value) == len(detections)
        and np.asarray(value).dtype.kind in "biufUS"
    )


def detections_to_json(detections: sv.Detections, image_hw: tuple[int, int], image: str = "") -> dict[str, Any]:
    """sv.Detections of one (H, W) image -> JSON-able dict (see the module docstring)."""
    items = []
    data = detections.data
    extras = _extra_columns(detections)
    for i in range(len(detections)):
        item: dict[str, Any] = {
            "bbox_xyxy": [round(float(v), 2) for v in detections.xyxy[i]],
            "class_id": int(detections.class_id[i]) if detections.class_id is not None else None,
            "class_name": str(data["class_name"][i]) if "class_name" in data else None,
            "phrase": str(data["phrase"][i]) if "phrase" in data else None,
            "confidence": round(float(detections.confidence[i]), 5) if detections.confidence is not None else None,
        }
        if "mask_score" in data:
            item["mask_score"] = round(float(data["mask_score"][i]), 5)
        for key in extras:
            item[key] = np.asarray(data[key])[i].item()
        if detections.mask is not None:
            item["area"] = int(detections.mask[i].sum())
            item["mask"] = mask_to_rle(detections.mask[i])
        items.append(item)
    return {"image": image, "width": int(image_hw[1]), "height": int(image_hw[0]), "detections": items}


def detections_from_json(obj: dict[str, Any]) -> sv.Detections:
    """Inverse of :func:`detections_to_json`."""
    items = obj["detections"]
    h, w = obj["height"], obj["width"]
    if not items:
        from grounded.pipeline.selection import empty_detections

        return empty_detections((h, w))
    data: dict[str, np.ndarray] = {
        "class_name": np.array([it.get("class_name") or "" for it in items], dtype=str),
        "phrase": np.array([it.get("phrase") or "" for it in items], dtype=str),
    }
    if all("mask_score" in it for it in items):
        data["mask_score"] = np.array([it["mask_score"] for it in items], dtype=np.float32)
    for key in sorted(set(items[0]) - _FIELDS):
        if all(key in it for it in items):
            data[key] = np.array([it[key] for it in items])
    masks = None
    if all("mask" in it for it in items):
        masks = np.stack([rle_to_mask(it["mask"]) for it in items])
    return sv.Detections(
        xyxy=np.array([it["bbox_xyxy"] for it in items], dtype=np.float32).reshape(-1, 4),
        mask=masks,
        confidence=np.array([it["confidence"] for it in items], dtype=np.float32),
        class_id=np.array([it["class_id"] for it in items], dtype=int),
        data=data,
    )


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temporary file + rename): a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
