"""Human corrections of a labelling run: ``OUT/reviews/<image path>.json``, one file per image.

The model's records (``OUT/records/``) are never edited. A person's decisions live beside them, written
atomically, one file per image, so a re-run or a resume of ``grounded label`` keeps them, and
``grounded export`` applies them while it turns records into detections. A review (format 2)::

    {"format_version": 2, "file": "sub/a.jpg", "record_sha256": "<sha256 of the record's detections>",
     "reviewed": true, "revision": 3, "by": "ana", "at": "2026-12-05T10:11:12Z",
     "detections": {"0": {"status": "accepted", "by": "ana", "at": "..."},
                    "2": {"status": "rejected", ...},
                    "3": {"status": "accepted", "class_id": 4, ...},
                    "5": {"status": "accepted", "mask": {"size": [H, W], "counts": "..."}, ...}},
     "added": [{"id": "a1b2c3", "status": "accepted", "class_id": 1, "source": "clicks",
                "mask": {"size": [H, W], "counts": "..."}, "by": "ana", "at": "..."},
               {"id": "d4e5f6", "status": "candidate", "class_id": 0, "source": "find_more", "phrase": "a mirror",
                "confidence": 0.41, "mask": {...}, ...}]}

Keys of ``detections`` are indices into the record's ``detections`` list; detections without an entry are
undecided and kept as the model made them. ``status`` is ``accepted`` or ``rejected``; ``class_id`` (an
index into the run's classes) relabels the detection; ``mask`` (COCO RLE at the image's size) replaces its mask
(a fixed detection: clicks, brush or eraser). ``added`` are objects the model missed: drawn by a person
(``source`` ``clicks``, ``box`` or ``brush``; ``accepted``) or proposed by the teacher with another phrase
(``find_more``; ``candidate`` until a person accepts or rejects it). Applied by :func:`apply_review`:
rejected detections are dropped, relabelled ones get the new ``class_id`` / ``class_name`` (and
``relabelled_from``), fixed ones their new mask and box, accepted added objects are appended; candidates and
rejected added objects are left out.

Who and when: every write names its author (``by``) and the server stamps the time (``at``, UTC); each decision
and added object keeps the ``by`` / ``at`` of the write that last changed it. ``revision`` counts the writes:
a client sends the revision it edited, and a write based on an older one raises :class:`ReviewConflict`
(the server's 409, with the current review) instead of overwriting someone else's work. Writes hold a lock
(``OUT/reviews/.lock``, ``flock``; and one per process), so read-compare-write is atomic between servers too.

A review remembers which record it was made on (``record_sha256``). When the record has changed since
(the run was redone with ``--force``), the review is stale: :func:`reviewed_record` ignores it with a
warning rather than apply decisions to other detections. Format 1 reviews (no revision, no masks) still read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from grounded.errors import InputError, OrderError, quote
from grounded.formats.files import atomic_write_text

logger = logging.getLogger(__name__)

REVIEWS_DIR = "reviews"
STATUSES = ("accepted", "rejected")
ADDED_STATUSES = ("accepted", "rejected", "candidate")
SOURCES = ("clicks", "box", "brush", "find_more")
FORMAT_VERSION = 2
MAX_ADDED = 500  # added objects per image
_STAMP = ("by", "at")
_LOCK = threading.Lock()


class ReviewConflict(OrderError):
    """A review written on an older revision than the stored one; ``current`` is the stored review."""

    def __init__(self, message: str, current: dict[str, Any]) -> None:
        super().__init__(message)
        self.current = current


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


def revision_of(review: dict[str, Any] | None) -> int:
    """The stored revision of a review (0: none; a format 1 review counts as 1)."""
    return 0 if review is None else int(review.get("revision", 1))


def _mask(value: Any, where: str, hw: tuple[int, int]) -> dict[str, Any]:
    """A client's COCO RLE (compressed or list counts) at the image's size -> compressed RLE; InputError."""
    from grounded.utils.masks import mask_to_rle, rle_to_mask

    if not isinstance(value, dict) or set(value) != {"size", "counts"}:
        raise InputError(f'{where}: mask must be a COCO RLE {{"size": [H, W], "counts": ...}}')
    if list(value["size"]) != list(hw):
        raise InputError(f"{where}: mask size {value['size']} is not the image's [{hw[0]}, {hw[1]}]")
    try:
        return mask_to_rle(rle_to_mask(value))
    except Exception:  # noqa: BLE001  (any malformed counts)
        raise InputError(f"{where}: mask counts cannot be decoded as COCO RLE") from None


def _class_id(value: Any, where: str, classes: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(classes):
        raise InputError(f"{where}: class_id must be an index into the {len(classes)} classes, got {value!r}")
    return value


def _decisions(decisions: Any, record: dict[str, Any], classes: list[str], hw: tuple[int, int]) -> dict[str, dict]:
    if not isinstance(decisions, dict):
        raise InputError("detections must be an object {index: {status, class_id, mask}}")
    count, clean = len(record["detections"]), {}
    for key, decision in decisions.items():
        if not str(key).isdigit() or int(key) >= count:
            raise InputError(f"detection index {key!r} is out of range: the record has {count} detection(s)")
        if not isinstance(decision, dict) or set(decision) - {"status", "class_id", "mask", *_STAMP}:
            raise InputError(f"detection {key}: expected {{'status': ..., 'class_id': ..., 'mask': ...}}, got {decision!r}")
        status = decision.get("status", "accepted")
        if status not in STATUSES:
            raise InputError(f"detection {key}: status must be one of {list(STATUSES)}, got {status!r}")
        entry: dict[str, Any] = {"status": status}
        if "class_id" in decision:
            class_id = _class_id(decision["class_id"], f"detection {key}", classes)
            if class_id != record["detections"][int(key)]["class_id"]:
                entry["class_id"] = class_id
        if decision.get("mask") is not None:
            entry["mask"] = _mask(decision["mask"], f"detection {key}", hw)
        clean[str(int(key))] = entry
    return dict(sorted(clean.items(), key=lambda kv: int(kv[0])))


def _added(items: Any, classes: list[str], hw: tuple[int, int]) -> list[dict[str, Any]]:
    if not isinstance(items, list) or len(items) > MAX_ADDED:
        raise InputError(f"added must be a list of at most {MAX_ADDED} objects {{class_id, mask, status, source}}")
    clean, seen = [], set()
    for n, item in enumerate(items):
        where = f"added object {n}"
        if not isinstance(item, dict) or set(item) - {"id", "status", "class_id", "mask", "source", "phrase",
                                                       "confidence", *_STAMP}:
            raise InputError(f"{where}: expected {{'class_id', 'mask', 'status', 'source', 'phrase', 'confidence'}}")
        status, source = item.get("status", "accepted"), item.get("source", "clicks")
        if status not in ADDED_STATUSES:
            raise InputError(f"{where}: status must be one of {list(ADDED_STATUSES)}, got {status!r}")
        if source not in SOURCES:
            raise InputError(f"{where}: source must be one of {list(SOURCES)}, got {source!r}")
        ident = str(item.get("id") or uuid.uuid4().hex[:12])[:32]
        if ident in seen:
            raise InputError(f"{where}: id {ident!r} is used twice")
        seen.add(ident)
        entry = {"id": ident, "status": status, "source": source,
                 "class_id": _class_id(item.get("class_id"), where, classes), "mask": _mask(item.get("mask"), where, hw)}
        if item.get("phrase") is not None:
            entry["phrase"] = str(item["phrase"])[:200]
        if item.get("confidence") is not None:
            confidence = item["confidence"]
            if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
                raise InputError(f"{where}: confidence must be a number in [0, 1], got {confidence!r}")
            entry["confidence"] = float(confidence)
        clean.append(entry)
    return clean


def _author(value: Any) -> str:
    by = "anonymous" if value in (None, "") else value
    if not isinstance(by, str) or len(by) > 80 or not by.isprintable():
        raise InputError(f"by (who made the review) must be a name of at most 80 printable characters, got {quote(by, 60)}")
    return by


def check_review(review: dict[str, Any], record: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Validate a review of ``record`` sent by a client; return it normalised, unstamped (InputError naming the field)."""
    if not isinstance(review, dict):
        raise InputError(f"a review must be a JSON object, got {type(review).__name__}")
    unknown = sorted(set(review) - {"reviewed", "detections", "added", "record_sha256", "file", "format_version",
                                    "revision", "by", "at"})
    if unknown:
        raise InputError(f"unknown review field(s) {unknown}; expected reviewed, detections, added, revision, by")
    if "error" in record:
        raise InputError(f"{record['image']!r} could not be read by the run ({record['error']}); nothing to review")
    reviewed = review.get("reviewed", False)
    if not isinstance(reviewed, bool):
        raise InputError(f"reviewed must be true or false, got {reviewed!r}")
    revision = review.get("revision")
    if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int) or revision < 0):
        raise InputError(f"revision must be the revision you edited (0 for none), got {revision!r}")
    hw = (int(record["height"]), int(record["width"]))
    return {"format_version": FORMAT_VERSION, "file": record["image"], "record_sha256": record_fingerprint(record),
            "reviewed": reviewed, "by": _author(review.get("by")),
            "detections": _decisions(review.get("detections", {}), record, classes, hw),
            "added": _added(review.get("added", []), classes, hw)}


def _stamped(entry: dict[str, Any], before: dict[str, Any] | None, by: str, at: str) -> dict[str, Any]:
    """``entry`` with the by / at of ``before`` when nothing else changed, else this write's."""
    unchanged = before is not None and {k: v for k, v in before.items() if k not in _STAMP} == entry
    return {**entry, "by": before.get("by", by), "at": before.get("at", at)} if unchanged else {**entry, "by": by, "at": at}


@contextmanager
def _review_lock(out: Path) -> Iterator[None]:
    folder = Path(out) / REVIEWS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with _LOCK, open(folder / ".lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: the process lock only
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_review(out: str | Path, record: dict[str, Any], review: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Validate, stamp (who / when) and write atomically the review of ``record``'s image; return what was written.

    ``review["revision"]``: the revision the client edited; a stored review of another revision raises
    :class:`ReviewConflict` (never a silent overwrite). Omitted, it is only accepted for an image with no review."""
    clean = check_review(review, record, classes)
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with _review_lock(Path(out)):
        stored = read_review(out, record["image"])
        current = None if stored is None or is_stale(stored, record) else stored
        sent = review.get("revision")
        if current is not None and sent != revision_of(current):
            raise ReviewConflict(f"the review of {record['image']!r} was changed by {current.get('by', 'someone')} "
                                 f"at {current.get('at', '?')} (revision {revision_of(current)}; yours was based on "
                                 f"{sent}): reload it and make your change again", current)
        before = current or {}
        by = clean["by"]
        clean["detections"] = {k: _stamped(v, before.get("detections", {}).get(k), by, at)
                               for k, v in clean["detections"].items()}
        earlier = {item.get("id"): item for item in before.get("added", [])}
        clean["added"] = [_stamped(item, earlier.get(item["id"]), by, at) for item in clean["added"]]
        clean.update(revision=revision_of(stored) + 1, at=at)
        atomic_write_text(review_path(out, record["image"]), json.dumps(clean, indent=1, sort_keys=True) + "\n")
    return clean


def _with_mask(item: dict[str, Any], rle: dict[str, Any]) -> dict[str, Any]:
    """A record detection with mask ``rle``, its box and area recomputed from it."""
    from pycocotools import mask as mask_utils

    coco = {"size": rle["size"], "counts": rle["counts"].encode()}
    x, y, w, h = (float(v) for v in mask_utils.toBbox(coco))
    return {**item, "mask": rle, "bbox_xyxy": [x, y, x + w, y + h], "area": int(mask_utils.area(coco))}


def apply_review(record: dict[str, Any], review: dict[str, Any] | None, classes: list[str]) -> dict[str, Any]:
    """The record as the reviewer left it (a new dict): rejected detections dropped, relabelled ones moved, fixed
    ones with their new mask, accepted added objects appended."""
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
        if "mask" in decision:
            item = {**_with_mask(item, decision["mask"]), "fixed": True}
        kept.append(item)
    for added in review.get("added", []):
        if added.get("status", "accepted") == "accepted":
            name = classes[added["class_id"]]
            kept.append(_with_mask({"class_id": added["class_id"], "class_name": name, "phrase": added.get("phrase", name),
                                    "confidence": added.get("confidence"), "added": added.get("source", "clicks")},
                                   added["mask"]))
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
    """What the reviews of a run hold: images marked reviewed, images with a review file, decisions by kind
    (``accepted``, ``rejected``, ``relabelled``, ``fixed``: a new mask; ``added``: accepted added objects,
    ``candidates``: the teacher's proposals not yet decided)."""
    counts = {"reviewed_images": 0, "review_files": 0, "accepted": 0, "rejected": 0, "relabelled": 0, "fixed": 0,
              "added": 0, "candidates": 0}
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
            kept = decision["status"] != "rejected"
            counts["relabelled"] += "class_id" in decision and kept
            counts["fixed"] += "mask" in decision and kept
        for added in review.get("added", []):
            status = added.get("status", "accepted")
            counts["added"] += status == "accepted"
            counts["candidates"] += status == "candidate"
    return counts


def reviews_newer_than(out: str | Path, path: str | Path) -> bool:
    """Whether a review of the run was written after ``path`` was (or ``path`` does not exist): an export made
    before the latest corrections."""
    folder = Path(out) / REVIEWS_DIR
    reviews = [p.stat().st_mtime_ns for p in folder.rglob("*.json")] if folder.is_dir() else []
    if not Path(path).is_file():
        return True
    return bool(reviews) and max(reviews) > Path(path).stat().st_mtime_ns


def summarise_reviews(out: str | Path) -> dict[str, int]:
    """:func:`review_counts`, also written into the run's ``summary.json`` (``extra.reviews``) when it has one."""
    from grounded.label.summary import SUMMARY_FILE

    counts = review_counts(out)
    path = Path(out) / SUMMARY_FILE
    if path.is_file():
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary.setdefault("extra", {})["reviews"] = counts
        atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return counts
