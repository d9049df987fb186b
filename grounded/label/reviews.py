"""Human corrections of a labelling run: ``OUT/reviews/<image path>.json``, one file per image.

The model's records (``OUT/records/``) are never edited. A person's decisions live beside them, written
atomically, one file per image, so a re-run or a resume of ``grounded label`` keeps them, and
``grounded export`` applies them while it turns records into detections. A review::

    {"format_version": 1, "file": "sub/a.jpg", "record_sha256": "<sha256 of the record's detections>",
     "reviewed": true,
     "detections": {"0": {"status": "accepted"},
                    "2": {"status": "rejected"},
                    "3": {"status": "accepted", "class_id": 4}}}

Keys of ``detections`` are indices into the record's ``detections`` list; detections without an entry are
undecided and kept as the model made them. ``status`` is ``accepted`` or ``rejected``; ``class_id`` (an
index into the run's classes) relabels the detection. Applied by :func:`apply_review`: rejected detections
are dropped, relabelled ones get the new ``class_id`` / ``class_name`` (and ``relabelled_from``).

A review remembers which record it was made on (``record_sha256``). When the record has changed since
(the run was redone with ``--force``), the review is stale: :func:`reviewed_record` ignores it with a
warning rather than apply decisions to other detections.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from grounded.errors import InputError
from grounded.formats.files import atomic_write_text

logger = logging.getLogger(__name__)

REVIEWS_DIR = "reviews"
STATUSES = ("accepted", "rejected")
FORMAT_VERSION = 1


def review_path(out: str | Path, relative: str) -> Path:
    """``OUT/reviews/<relative>.json``; ``relative`` must be a plain path below the images root."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or "\\" in relative or any(p in ("", ".", "..") for p in parts):
        raise InputError(f"image path {relative!r} must be relative to the images root, without '..'")
    return Path(out) / REVIEWS_DIR / f"{relative}.json"


def record_fingerprint(record: dict[str, Any]) -> str:
    """sha256 of a record's detections (canonical JSON): what a review was made on."""
    return hashlib.sha256(json.dumps(record.get("detections", []), sort_keys=True).encode()).hexdigest()


def read_review(out: str | Path, relative: str) -> dict[str, Any] | None:
    """The review of one image, or None when nobody reviewed it."""
    path = review_path(out, relative)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def is_stale(review: dict[str, Any], record: dict[str, Any]) -> bool:
    return review.get("record_sha256") != record_fingerprint(record)


def check_review(review: dict[str, Any], record: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Validate a review of ``record`` sent by a client; return it normalised (raises InputError naming the field)."""
    if not isinstance(review, dict):
        raise InputError(f"a review must be a JSON object, got {type(review).__name__}")
    unknown = sorted(set(review) - {"reviewed", "detections", "record_sha256", "file", "format_version"})
    if unknown:
        raise InputError(f"unknown review field(s) {unknown}; expected reviewed, detections")
    if "error" in record:
        raise InputError(f"{record['image']!r} could not be read by the run ({record['error']}); nothing to review")
    count = len(record["detections"])
    reviewed = review.get("reviewed", False)
    if not isinstance(reviewed, bool):
        raise InputError(f"reviewed must be true or false, got {reviewed!r}")
    decisions = review.get("detections", {})
    if not isinstance(decisions, dict):
        raise InputError("detections must be an object {index: {status, class_id}}")
    clean: dict[str, dict[str, Any]] = {}
    for key, decision in decisions.items():
        if not str(key).isdigit() or int(key) >= count:
            raise InputError(f"detection index {key!r} is out of range: the record has {count} detection(s)")
        if not isinstance(decision, dict) or set(decision) - {"status", "class_id"}:
            raise InputError(f"detection {key}: expected {{'status': ..., 'class_id': ...}}, got {decision!r}")
        status = decision.get("status", "accepted")
        if status not in STATUSES:
            raise InputError(f"detection {key}: status must be one of {list(STATUSES)}, got {status!r}")
        entry: dict[str, Any] = {"status": status}
        if "class_id" in decision:
            class_id = decision["class_id"]
            if isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < len(classes):
                raise InputError(f"detection {key}: class_id must be an index into the {len(classes)} classes, got {class_id!r}")
            if class_id != record["detections"][int(key)]["class_id"]:
                entry["class_id"] = class_id
        clean[str(int(key))] = entry
    return {"format_version": FORMAT_VERSION, "file": record["image"], "record_sha256": record_fingerprint(record),
            "reviewed": reviewed, "detections": dict(sorted(clean.items(), key=lambda kv: int(kv[0])))}


def write_review(out: str | Path, record: dict[str, Any], review: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Validate and write (atomically) the review of ``record``'s image; return what was written."""
    clean = check_review(review, record, classes)
    atomic_write_text(review_path(out, record["image"]), json.dumps(clean, indent=1, sort_keys=True) + "\n")
    return clean


def apply_review(record: dict[str, Any], review: dict[str, Any] | None, classes: list[str]) -> dict[str, Any]:
    """The record as the reviewer left it: rejected detections dropped, relabelled ones moved (a new dict)."""
    if not review or "error" in record:
        return record
    decisions = review.get("detections", {})
    kept = []
    for index, item in enumerate(record["detections"]):
        decision = decisions.get(str(index), {})
        if decision.get("status") == "rejected":
            continue
        if "class_id" in decision:
            item = {**item, "class_id": decision["class_id"], "class_name": classes[decision["class_id"]],
                    "relabelled_from": item["class_name"]}
        kept.append(item)
    return {**record, "detections": kept}


def reviewed_record(out: str | Path, relative: str, record: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """``record`` with its image's review applied, when there is one made on this very record."""
    review = read_review(out, relative)
    if review is None:
        return record
    if is_stale(review, record):
        logger.warning("ignoring the review of %s: its record changed since (the run was redone)", relative)
        return record
    return apply_review(record, review, classes)


def review_counts(out: str | Path) -> dict[str, int]:
    """What the reviews of a run hold: images marked reviewed, images with a review file, decisions by kind."""
    counts = {"reviewed_images": 0, "review_files": 0, "accepted": 0, "rejected": 0, "relabelled": 0}
    folder = Path(out) / REVIEWS_DIR
    if not folder.is_dir():
        return counts
    for path in sorted(folder.rglob("*.json")):
        if path.name.startswith("."):
            continue
        review = json.loads(path.read_text(encoding="utf-8"))
        counts["review_files"] += 1
        counts["reviewed_images"] += bool(review.get("reviewed"))
        for decision in review.get("detections", {}).values():
            counts[decision["status"]] += 1
            counts["relabelled"] += "class_id" in decision and decision["status"] != "rejected"
    return counts
