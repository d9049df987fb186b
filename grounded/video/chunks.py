"""Long videos in overlapping chunks: one fresh model session per chunk, track ids stitched across chunks.

A video of F frames is cut by :class:`ChunkPlan` into chunks of ``size`` frames, chunk k starting at
``k * (size - overlap)``: consecutive chunks share ``overlap`` frames. Chunk 0 *owns* (reports) its frames;
chunk k > 0 owns its frames after the overlap, the overlap being owned by chunk k - 1. Each chunk runs its own
model session (so a model's memory never holds more than a chunk) and its own track ids
(:mod:`grounded.video.tracks`).

Stitching: on the overlap, chunk k's tracks are compared with chunk k - 1's (by then in the video's ids): IoU =
summed mask intersections / summed unions over the overlap frames, one-to-one (Hungarian), same class, kept
when >= ``stitch_iou``. A matched track keeps the previous chunk's id; any other track gets the next id of the
video's counter when it first shows on a frame the chunk owns. Ids are never reused.

One pass over the frames: chunks k - 1 and k both run during their overlap (two sessions at most). A model
that holds results back (SAM 3: 15 frames) releases them in order, the older chunk first, so chunk k - 1 has
reported the overlap before chunk k's overlap is stitched, and chunk k's ids are known before its first owned
frame: frames come out in order, each as soon as it is final.

Resume: with a :class:`~grounded.video.records.ChunkStore`, each chunk's record is written when its last
frame is final; a new run starts at the first missing chunk, reading the previous record's overlap frames and
id counter. Chunk k's session starts fresh at its first frame either way, so a resumed run writes the same bytes
as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from grounded.video.frames import VideoError, VideoSource
from grounded.video.options import TrackOptions
from grounded.video.records import ChunkStore, object_json, tail_from_record
from grounded.video.tracks import TrackedFrame, TrackedObject

logger = logging.getLogger(__name__)

Tagged = list[tuple[int, TrackedObject]]  # (video track id, object) of one frame


class ChunkTracker(Protocol):
    """One chunk's tracker (grounded/video/predictor.py): frames in, released TrackedFrames out, in order."""

    def step(self, frame_index: int, frame: np.ndarray) -> list[TrackedFrame]: ...

    def finish(self) -> list[TrackedFrame]: ...


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk boundaries of a ``frames``-frame video (see the module docstring)."""

    frames: int
    size: int
    overlap: int

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def count(self) -> int:
        return 1 if self.frames <= self.size else 1 + math.ceil((self.frames - self.size) / self.stride)

    def start(self, chunk: int) -> int:
        return chunk * self.stride

    def stop(self, chunk: int) -> int:
        """One past the chunk's last frame."""
        return min(self.start(chunk) + self.size, self.frames)

    def owned_start(self, chunk: int) -> int:
        return 0 if chunk == 0 else self.start(chunk) + self.overlap


class Stitcher:
    """Matches one chunk's tracks to the previous chunk's ids over their overlap (see the module docstring)."""

    def __init__(self, min_iou: float) -> None:
        self.min_iou = min_iou
        self.inter: dict[tuple[int, int], float] = defaultdict(float)
        self.area_local: dict[int, float] = defaultdict(float)
        self.area_prev: dict[int, float] = defaultdict(float)
        self.class_local: dict[int, int] = {}
        self.class_prev: dict[int, int] = {}

    def add(self, previous: Tagged, local: list[TrackedObject]) -> None:
        """One overlap frame: the previous chunk's (id, object) pairs and this chunk's objects."""
        for obj in local:
            self.area_local[obj.track] += float(obj.mask.sum())
            self.class_local[obj.track] = obj.class_id
        for gid, obj in previous:
            self.area_prev[gid] += float(obj.mask.sum())
            self.class_prev[gid] = obj.class_id
            for mine in local:
                if mine.class_id == obj.class_id:
                    self.inter[(mine.track, gid)] += float(np.logical_and(mine.mask, obj.mask).sum())

    def solve(self) -> dict[int, int]:
        """Local track id -> previous id, for the pairs kept."""
        from scipy.optimize import linear_sum_assignment

        locals_, prevs = sorted(self.area_local), sorted(self.area_prev)
        if not locals_ or not prevs:
            return {}
        iou = np.zeros((len(locals_), len(prevs)))
        for (lid, gid), inter in self.inter.items():
            union = self.area_local[lid] + self.area_prev[gid] - inter
            iou[locals_.index(lid), prevs.index(gid)] = inter / union if union > 0 else 0.0
        rows, cols = linear_sum_assignment(-iou)
        return {locals_[r]: prevs[c] for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.min_iou}


@dataclass
class _Chunk:
    index: int
    tracker: ChunkTracker
    stitcher: Stitcher | None
    previous: dict[int, Tagged]  # the previous chunk's frames in this chunk's overlap (filled as it reports them)
    mapping: dict[int, int] = field(default_factory=dict)  # chunk track id -> video track id
    frames: list[dict[str, Any]] = field(default_factory=list)  # record entries of owned frames
    tail: dict[int, Tagged] = field(default_factory=dict)  # owned frames the next chunk overlaps


class _Run:
    """State shared by the chunks of one pass: the plan, the record store and the video's id counter."""

    def __init__(self, plan: ChunkPlan, store: ChunkStore | None, next_id: int) -> None:
        self.plan, self.store, self.next_id = plan, store, next_id

    def accept(self, chunk: _Chunk, frame: TrackedFrame) -> Iterator[tuple[int, Tagged]]:
        plan, index = self.plan, frame.index
        if index < plan.owned_start(chunk.index):  # the overlap, reported by the previous chunk
            chunk.stitcher.add(chunk.previous.get(index, []), frame.objects)
            if index == plan.owned_start(chunk.index) - 1:
                chunk.mapping = chunk.stitcher.solve()
                chunk.previous = {}
            return
        tagged = []
        for obj in frame.objects:
            if obj.track not in chunk.mapping:
                chunk.mapping[obj.track] = self.next_id
                self.next_id += 1
            tagged.append((chunk.mapping[obj.track], obj))
        tagged.sort(key=lambda pair: pair[0])
        if self.store is not None:
            chunk.frames.append({"frame": index, "objects": [object_json(obj, gid) for gid, obj in tagged]})
        if chunk.index + 1 < plan.count() and index >= plan.start(chunk.index + 1):
            chunk.tail[index] = tagged
        yield index, tagged

    def close(self, chunk: _Chunk) -> None:
        plan = self.plan
        if self.store is not None:
            self.store.write({"chunk": chunk.index, "start": plan.start(chunk.index),
                              "owned": [plan.owned_start(chunk.index), plan.stop(chunk.index)],
                              "next_id": self.next_id, "frames": chunk.frames})


def track_chunks(source: VideoSource, make_tracker: Callable[[int], ChunkTracker], options: TrackOptions,
                 store: ChunkStore | None = None) -> Iterator[tuple[int, Tagged]]:
    """Every frame's (video track id, object) pairs, in frame order; ``make_tracker(start)`` builds a chunk's.

    With ``store``, finished chunks are skipped (their frames are not yielded again) and each chunk's record is
    written as it finishes.
    """
    plan = ChunkPlan(source.info.frame_count, options.chunk_frames, options.chunk_overlap)
    first = store.finished() if store is not None else 0
    if first >= plan.count():
        return
    next_id, tail = 1, {}
    if first > 0:
        record = store.read(first - 1)
        next_id, tail = int(record["next_id"]), tail_from_record(record, plan.start(first))
    run = _Run(plan, store, next_id)
    active: list[_Chunk] = []
    upcoming = first
    last = first - 1
    for index, frame in source.frames(start=plan.start(first)):
        if index >= plan.frames:
            logger.warning("%s: more frames than its index lists (%d); the rest are ignored", source.info.path,
                           plan.frames)
            break
        while upcoming < plan.count() and plan.start(upcoming) == index:
            stitcher = Stitcher(options.stitch_iou) if upcoming > 0 else None
            previous = active[-1].tail if active else tail  # tail: from the record, when resuming
            active.append(_Chunk(upcoming, make_tracker(plan.start(upcoming)), stitcher, previous))
            upcoming += 1
        for chunk in list(active):
            released = chunk.tracker.step(index, frame)
            ending = index == plan.stop(chunk.index) - 1
            if ending:
                released = released + chunk.tracker.finish()
            for tracked in released:
                yield from run.accept(chunk, tracked)
            if ending:
                run.close(chunk)
                active.remove(chunk)
                last = chunk.index
    if last < plan.count() - 1:
        raise VideoError(f"{source.info.path}: the video ended before its last frame ({plan.frames} indexed); "
                         f"the file is truncated")
