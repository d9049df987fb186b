"""Per-image records: the streamed, resumable state of a labelling run.

Each image has one JSON file ``OUT/records/<path relative to the images root>.json``, written atomically
(temporary file + ``os.replace``) as soon as the image is done, so a crash leaves only whole records.
A record is the detections JSON of :mod:`grounded.io.detections_json` (the one schema, versioned; masks as
COCO RLE strings, so memory stays flat however many images a run has) with ``image`` the relative path::

    {"schema": 2, "image": "sub/a.jpg", "height": 480, "width": 640,
     "detections": [{"class_id": 0, "class_name": "car", "phrase": "car", "confidence": 0.91,
                     "mask_score": 0.97, "bbox_xyxy": [x0, y0, x1, y1], "area": 5120,
                     "mask": {"size": [480, 640], "counts": "..."}}]}

An image that failed gets an error row ``{"schema": 2, "image": ..., "error": "Type: reason",
"error_type": "Type"}`` instead; error rows are tried again only when asked (``retry_errors``), so one
poisoned file never blocks a run from completing. An empty ``detections`` list is a negative image and
stays in the dataset. Records of older versions (``file``, ``xyxy``, ``rle``) still read. A record file
that cannot be parsed (emptied or truncated by a disk fault) is named in a warning and counts as not done.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import supervision as sv

from grounded.formats.files import atomic_write_text, disk_full_guard
from grounded.io.detections_json import SCHEMA_VERSION, detections_from_json, upgrade
from grounded.label.walk import walk_images

logger = logging.getLogger(__name__)

RECORDS_DIR = "records"
REASON_CHARS = 300
RESUME_HINT = "finished records are kept: free some space and run the same command again to resume"


def image_relatives(root: Path, out: Path) -> list[str]:
    """Every entry named like an image below ``root`` (:func:`grounded.label.walk.walk_images`), as sorted
    POSIX paths relative to it, leaving out anything inside ``out`` (a run written into its own image folder
    must not label its previews and exported image links)."""
    return walk_images(root, exclude=out)


def record_path(out: Path, relative: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{relative}.json"


def record_text(record: dict[str, Any]) -> str:
    """The bytes of a record file (sorted keys: equal records, equal files)."""
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"


def error_record(relative: str, error_type: str, reason: str) -> dict[str, Any]:
    """The error row of one image: ``reason`` made one line of at most :data:`REASON_CHARS` characters."""
    line = " ".join(str(reason).split()) or "no message"
    if len(line) > REASON_CHARS:
        line = line[: REASON_CHARS - 3] + "..."
    return {"schema": SCHEMA_VERSION, "image": relative, "error": f"{error_type}: {line}", "error_type": error_type}


def record_to_detections(record: dict[str, Any], with_masks: bool = True) -> sv.Detections:
    """A record -> ``sv.Detections``; masks decoded only if ``with_masks`` (and the record has them)."""
    return detections_from_json(record, with_masks=with_masks)


def write_record(out: Path, record: dict[str, Any]) -> None:
    write_record_text(out, record["image"], record_text(record))


def write_record_text(out: Path, relative: str, text: str) -> bool:
    """Write one record file atomically; False (nothing written) when it already holds exactly ``text``.

    A full disk raises :class:`grounded.errors.DiskFullError` saying so: records already written stay, and
    the same command resumes once space is freed.
    """
    path = record_path(out, relative)
    if path.is_file() and path.read_bytes() == text.encode("utf-8"):
        return False
    with disk_full_guard(f"the record of {relative!r}", RESUME_HINT):
        atomic_write_text(path, text)
    return True


def read_record(out: Path, relative: str, warn: bool = True) -> dict[str, Any] | None:
    """The record of one image (upgraded to the current schema), or None when the image is not done.

    A record that cannot be parsed counts as not done (the image is labelled again); ``warn`` names it.
    """
    path = record_path(out, relative)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as exc:
        return _unreadable(path, type(exc).__name__, warn)
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or not ("error" in record or "detections" in record):
            raise ValueError("not a record object")
        return upgrade(record)
    except ValueError as exc:  # JSONDecodeError included
        return _unreadable(path, str(exc) if text.strip() else "empty file", warn)


def _unreadable(path: Path, why: str, warn: bool) -> None:
    if warn:
        logger.warning("record %s cannot be parsed (%s): treating its image as not done; it is labelled again",
                       path, why)
    return None


def remove_stale_temporaries(out: Path, folders: tuple[str, ...] = (RECORDS_DIR,)) -> int:
    """Delete temporary files a killed run left behind in ``folders`` of ``out``; return how many."""
    count = 0
    for folder in folders:
        for tmp in (Path(out) / folder).rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            count += 1
    return count
