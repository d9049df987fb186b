"""A labelling run as the review page sees it: images, their records, their reviews; nothing else on disk.

Reads only through ``grounded.label``'s public readers (``run.json``, ``records/``) and writes only
``OUT/reviews/`` (:mod:`grounded.label.reviews`). Images are served only when they are images of the run
(found below its images root, outside the run folder) and resolve inside the root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from grounded.io.detections_json import detections_to_json
from grounded.label.manifest import read_manifest
from grounded.label.queue import run_review_queue
from grounded.label.records import image_relatives, read_record, record_path, record_to_detections
from grounded.label.reviews import is_stale, read_review, review_path, write_review
from grounded.serve.security import Refused, resolve_inside


class RunView:
    """One ``grounded label`` output folder, for browsing and reviewing."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.manifest = read_manifest(self.out)  # InputError naming the folder when it is not a run
        self.root = Path(self.manifest["images_root"])
        self.classes: list[str] = list(self.manifest["classes"])
        self._relatives: set[str] = set()
        self._cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def info(self) -> dict[str, Any]:
        return {"out": str(self.out), "images_root": str(self.root), "classes": self.classes,
                "model": self.manifest.get("model", {})}

    def _check(self, relative: str) -> str:
        """``relative`` when it names an image of the run inside the images root (Refused 403 / 404 otherwise)."""
        resolve_inside(self.root, relative)  # '..', absolute paths, links out of the root, absent files
        if relative not in self._relatives:
            self._relatives = set(image_relatives(self.root, self.out))
        if relative not in self._relatives:
            raise Refused(f"{relative!r} is not an image of this run", 404)
        return relative

    def images(self) -> list[dict[str, Any]]:
        """Every image of the run with what the filters need (status, classes, scores, review state)."""
        relatives = image_relatives(self.root, self.out)
        self._relatives = set(relatives)
        return [self._entry(rel) for rel in relatives]

    def _entry(self, rel: str) -> dict[str, Any]:
        stamp = (_mtime(record_path(self.out, rel)), _mtime(review_path(self.out, rel)))
        hit = self._cache.get(rel)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        record = read_record(self.out, rel)
        entry: dict[str, Any] = {"file": rel, "status": "missing", "class_ids": [], "scores": [],
                                 "reviewed": False, "decisions": 0, "stale": False}
        if record is not None and "error" in record:
            entry.update(status="error", error=record["error"])
        elif record is not None:
            entry.update(status="labelled", class_ids=[d["class_id"] for d in record["detections"]],
                         scores=[d["confidence"] for d in record["detections"]])
            review = read_review(self.out, rel)
            if review is not None:
                entry.update(reviewed=bool(review.get("reviewed")), decisions=len(review.get("detections", {})),
                             stale=is_stale(review, record))
        self._cache[rel] = (stamp, entry)
        return entry

    def _record(self, relative: str) -> dict[str, Any]:
        record = read_record(self.out, self._check(relative))
        if record is None:
            raise Refused(f"{relative!r} has no record yet: the run has not reached it", 404)
        return record

    def record(self, relative: str) -> dict[str, Any]:
        """The image's detections (``grounded segment``'s JSON schema) and its review."""
        record = self._record(relative)
        if "error" in record:
            return {"file": relative, "error": record["error"], "detections": [], "review": None}
        detections = record_to_detections(record, with_masks=True)
        body = detections_to_json(detections, (record["height"], record["width"]), relative)
        for item, source in zip(body["detections"], record["detections"], strict=True):
            if source.get("confidence") is None:  # imported labels carry no score; keep it absent, not 0
                item["confidence"] = None
        review = read_review(self.out, relative)
        stale = review is not None and is_stale(review, record)
        body.update(review=None if stale else review, stale=stale, classes=self.classes)
        return body

    def save_review(self, relative: str, review: dict[str, Any]) -> dict[str, Any]:
        """Write the review (ReviewConflict when it was made on an older revision than the stored one)."""
        return write_review(self.out, self._record(relative), review, self.classes)

    def queue(self, limit: int | None = 50, include_reviewed: bool = False) -> list[dict[str, Any]]:
        """The review queue (:func:`grounded.label.queue.run_review_queue`) as JSON: file, doubt, reasons and the
        indices of the doubtful detections."""
        return [{"file": q.file, "doubt": q.doubt, "reasons": q.reasons, "detections": [d.index for d in q.detections]}
                for q in run_review_queue(self.out, limit, include_reviewed)]

    def image_path(self, relative: str) -> Path:
        return resolve_inside(self.root, self._check(relative))


def _mtime(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return 0
