"""Finished chunks on disk: one JSON record per chunk, written atomically: the unit of resume.

``OUT/<video>/chunks/000003.json`` holds chunk 3's frames (the ones it owns, grounded/video/chunks.py) with
every visible object under its video track id, and the id counter after the chunk::

    {"chunk": 3, "start": 852, "owned": [868, 1152], "next_id": 17,
     "frames": [{"frame": 868, "objects": [{"id": 4, "class_id": 0, "class_name": "car", "phrase": "car",
                 "score": 0.81, "mask_score": 0.97, "box": [x0, y0, x1, y1], "rle": {"size": [H, W],
                 "counts": "..."}}, ...]}, ...]}

Boxes are XYXY pixels (tight around the mask); masks are COCO RLE. No time stamps: a chunk run twice gives
the same bytes, so a run killed at any moment and run again ends with the same files (chunks are written
whole or not at all, and chunk k+1 depends only on the frames and on chunk k's record).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grounded.formats.files import atomic_write_text
from grounded.utils.masks import mask_box, mask_to_rle, rle_to_mask
from grounded.video.tracks import TrackedObject

CHUNKS_DIR = "chunks"
_NAME = re.compile(r"^(\d{6})\.json$")


def object_json(obj: TrackedObject, track_id: int) -> dict[str, Any]:
    """One tracked object as a record entry (RLE mask, tight box, scores rounded to 6 digits)."""
    return {"id": int(track_id), "class_id": int(obj.class_id), "class_name": obj.class_name, "phrase": obj.phrase,
            "score": round(float(obj.score), 6), "mask_score": round(float(obj.mask_score), 6),
            "box": mask_box(obj.mask), "rle": mask_to_rle(obj.mask)}


def object_from_json(entry: dict[str, Any]) -> tuple[int, TrackedObject]:
    """(track id, TrackedObject with its decoded mask) from a record entry."""
    obj = TrackedObject(int(entry["id"]), int(entry["class_id"]), str(entry["class_name"]), str(entry["phrase"]),
                        float(entry["score"]), float(entry["mask_score"]), rle_to_mask(entry["rle"]))
    return int(entry["id"]), obj


def record_text(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"


class ChunkStore:
    """The chunk records of one video under ``folder`` (``folder/chunks/``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder) / CHUNKS_DIR

    def path(self, chunk: int) -> Path:
        return self.folder / f"{chunk:06d}.json"

    def finished(self) -> int:
        """How many chunks are done, counting from chunk 0 without a gap."""
        done = {int(m.group(1)) for p in self.folder.glob("*.json") if (m := _NAME.match(p.name))} \
            if self.folder.is_dir() else set()
        count = 0
        while count in done:
            count += 1
        return count

    def write(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.path(int(record["chunk"])), record_text(record))

    def read(self, chunk: int) -> dict[str, Any]:
        return json.loads(self.path(chunk).read_text(encoding="utf-8"))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every finished chunk's record, in order (one held in memory at a time)."""
        for chunk in range(self.finished()):
            yield self.read(chunk)

    def frames(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(frame index, object entries) of every finished frame, in order."""
        for record in self.records():
            for frame in record["frames"]:
                yield int(frame["frame"]), frame["objects"]


def tail_from_record(record: dict[str, Any], first: int) -> dict[int, list[tuple[int, TrackedObject]]]:
    """The record's frames from ``first`` on (the next chunk's overlap): frame -> [(track id, object)]."""
    return {int(f["frame"]): [object_from_json(e) for e in f["objects"]]
            for f in record["frames"] if int(f["frame"]) >= first}
