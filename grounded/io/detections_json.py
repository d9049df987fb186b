"""The one JSON form of an image's detections: ``grounded segment`` / ``predict`` files and label records.

Schema version 2 (``"schema": 2``); masks as COCO compressed RLE, boxes XYXY in pixels of the image as
displayed (EXIF orientation applied)::

    {
      "schema": 2, "image": "truck.jpg", "width": 1800, "height": 1200,
      "detections": [
        {"bbox_xyxy": [x1, y1, x2, y2], "class_id": 0, "class_name": "wheel", "phrase": "a wheel",
         "confidence": 0.61, "mask_score": 0.93, "area": 5231,
         "mask": {"size": [1200, 1800], "counts": "..."}}
      ]
    }

Every per-detection column of ``detections.data`` round-trips: ``class_name``, ``phrase``, ``mask_score``
and any other column of scalars (numbers, strings or booleans, e.g. CLIP verification's
``class_name_detector``, ``verify`` and ``clip_prob``) written under its own key. ``area`` is derived (mask
pixels), not a column. Labelling records (:mod:`grounded.label.records`) are this object with ``image``
the path relative to the images root; an image that failed holds ``error`` (``"Type: reason"``) and
``error_type`` instead of ``detections``.

Older forms still read (:func:`upgrade`): version 1 is everything without a ``schema`` key, i.e. the
``grounded segment`` files above without it, and label records ``{"file", "height", "width", "detections":
[{"xyxy", "rle", "class_id", "class_name", "phrase", "confidence", "mask_score"}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from pycocotools import mask as mask_utils

from grounded.formats.files import atomic_write_text
from grounded.utils.masks import mask_to_rle, rle_to_mask

SCHEMA_VERSION = 2
BOX_DECIMALS, SCORE_DECIMALS = 3, 6
_FIELDS = {"bbox_xyxy", "class_id", "class_name", "phrase", "confidence", "mask_score", "area", "mask"}
_V1_RENAMES = {"xyxy": "bbox_xyxy", "rle": "mask"}


def _extra_columns(detections: sv.Detections) -> list[str]:
    """Per-detection ``data`` columns of scalars beyond the standard ones, in a stable order."""
    return sorted(
        key for key, value in detections.data.items()
        if key not in _FIELDS and np.ndim(value) == 1 and len(value) == len(detections)
        and np.asarray(value).dtype.kind in "biufUS"
    )


def _score(value: Any) -> float:
    return round(float(value), SCORE_DECIMALS)


def detections_to_json(
    detections: sv.Detections, image_hw: tuple[int, int], image: str = "", *, rles: Sequence[dict] | None = None
) -> dict[str, Any]:
    """sv.Detections of one (H, W) image -> JSON-able dict (see the module docstring).

    ``rles``: the masks already encoded (one COCO RLE per detection, size (H, W)), for a caller that encodes
    full-resolution masks one at a time instead of holding ``detections.mask``; ``detections.mask`` is then
    not read.
    """
    data = detections.data
    extras = _extra_columns(detections)
    items = []
    for i in range(len(detections)):
        item: dict[str, Any] = {
            "bbox_xyxy": [round(float(v), BOX_DECIMALS) for v in detections.xyxy[i]],
            "class_id": int(detections.class_id[i]) if detections.class_id is not None else None,
            "class_name": str(data["class_name"][i]) if "class_name" in data else None,
            "phrase": str(data["phrase"][i]) if "phrase" in data else None,
            "confidence": _score(detections.confidence[i]) if detections.confidence is not None else None,
        }
        if "mask_score" in data:
            item["mask_score"] = _score(data["mask_score"][i])
        for key in extras:
            item[key] = np.asarray(data[key])[i].item()
        rle = rles[i] if rles is not None else mask_to_rle(detections.mask[i]) if detections.mask is not None else None
        if rle is not None:
            item["area"] = int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))
            item["mask"] = rle
        items.append(item)
    return {"schema": SCHEMA_VERSION, "image": image, "width": int(image_hw[1]), "height": int(image_hw[0]),
            "detections": items}


def upgrade(obj: dict[str, Any]) -> dict[str, Any]:
    """Any readable version -> the current one (a new dict; the input is not changed)."""
    version = obj.get("schema", 1)
    if version == SCHEMA_VERSION:
        return obj
    if version != 1:
        raise ValueError(f"detections JSON schema {version!r} is newer than this grounded reads ({SCHEMA_VERSION}); "
                         "upgrade grounded")
    new = {("image" if key == "file" else key): value for key, value in obj.items()}
    new["schema"] = SCHEMA_VERSION
    if "detections" in obj:
        new["detections"] = [{_V1_RENAMES.get(k, k): v for k, v in item.items()} for item in obj["detections"]]
    return new


def detections_from_json(obj: dict[str, Any], with_masks: bool = True) -> sv.Detections:
    """Inverse of :func:`detections_to_json` (any readable version); masks decoded only if ``with_masks``."""
    obj = upgrade(obj)
    items = obj["detections"]
    h, w = obj["height"], obj["width"]
    if not items:
        return sv.Detections(
            xyxy=np.zeros((0, 4), dtype=np.float32),
            mask=np.zeros((0, h, w), dtype=bool) if with_masks else None,
            confidence=np.zeros(0, dtype=np.float32), class_id=np.zeros(0, dtype=int),
            data={"class_name": np.array([], dtype=str), "phrase": np.array([], dtype=str),
                  "mask_score": np.zeros(0, dtype=np.float32)},
        )
    data: dict[str, np.ndarray] = {
        "class_name": np.array([it.get("class_name") or "" for it in items], dtype=str),
        "phrase": np.array([it.get("phrase") or "" for it in items], dtype=str),
    }
    if all(it.get("mask_score") is not None for it in items):
        data["mask_score"] = np.array([it["mask_score"] for it in items], dtype=np.float32)
    for key in sorted(set(items[0]) - _FIELDS):
        if all(key in it for it in items):
            data[key] = np.array([it[key] for it in items])
    masks = None
    if with_masks and all("mask" in it for it in items):
        masks = np.stack([rle_to_mask(it["mask"]) for it in items])
    return sv.Detections(
        xyxy=np.array([it["bbox_xyxy"] for it in items], dtype=np.float32).reshape(-1, 4),
        mask=masks,
        confidence=np.array([it["confidence"] or 0.0 for it in items], dtype=np.float32),
        class_id=np.array([it["class_id"] for it in items], dtype=int),
        data=data,
    )


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write atomically (temporary file + rename): a crash never leaves a half-written file."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")
