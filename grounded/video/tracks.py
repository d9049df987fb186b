"""Tracks within one chunk of video: ids, admission of new objects by mask IoU, ending lost tracks.

Pure logic over what a video model reports per frame (:class:`~grounded.video.interfaces.ObjectMasks`), so it
is tested with fakes (tests/video/). A :class:`TrackBook` maps the model session's object ids ("keys") to
track ids 1, 2, ... of the chunk (grounded/video/chunks.py turns them into the video's ids):

- :meth:`TrackBook.admit` (detector + video segmenter): the frame's detections were added to the session as
  candidate keys; in order of detection score, a candidate is refused when its mask is empty, when it overlaps a
  live track or an already admitted candidate by mask IoU >= ``match_iou`` (it is that object, found again), or
  when ``max_objects`` tracks are live; every other candidate becomes a new track. The caller removes the
  refused keys from the session: the other tracks are never reset.
- :meth:`TrackBook.observe`: a live track whose mask is empty on a frame is *lost* for that frame; lost for
  ``lost_frames`` consecutive frames, it ends: its key is retired and its id is never used again (a key the
  model reports again later starts a new track, with a new id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import supervision as sv

from grounded.utils.masks import mask_box, masks_iou
from grounded.video.interfaces import ObjectMasks
from grounded.video.options import TrackOptions


@dataclass
class Track:
    """A live track of one chunk: its id, the session key it follows, its class and detection score."""

    id: int
    key: int
    class_id: int
    class_name: str
    phrase: str
    score: float  # the detection score it was admitted with
    lost: int = 0  # consecutive frames with an empty mask


@dataclass
class Candidate:
    """A detection added to the session under ``key``, waiting for :meth:`TrackBook.admit`."""

    key: int
    class_id: int
    class_name: str
    phrase: str
    score: float


@dataclass
class TrackedObject:
    """One track on one frame: (H, W) bool mask, the track's detection score and this frame's model score."""

    track: int
    class_id: int
    class_name: str
    phrase: str
    score: float
    mask_score: float
    mask: np.ndarray


@dataclass
class TrackedFrame:
    """The visible tracks of one frame, by increasing track id."""

    index: int
    objects: list[TrackedObject] = field(default_factory=list)


class TrackBook:
    """Track ids of one chunk; see the module docstring."""

    def __init__(self, options: TrackOptions) -> None:
        self.options = options
        self.live: dict[int, Track] = {}  # session key -> track
        self.retired: set[int] = set()  # keys of ended tracks
        self.next_id = 1

    def new_track(self, key: int, class_id: int, class_name: str, phrase: str, score: float) -> Track:
        """Start a track following session ``key``, with the next id (ids are never reused)."""
        track = Track(self.next_id, int(key), int(class_id), str(class_name), str(phrase), float(score))
        self.next_id += 1
        self.live[track.key] = track
        self.retired.discard(track.key)
        return track

    def admit(self, candidates: list[Candidate], frame: ObjectMasks) -> list[int]:
        """Admit candidates (see the module docstring); return the refused keys, to remove from the session."""
        masks = frame.by_id()
        taken = [masks[key][0] for key in self.live if key in masks and masks[key][0].any()]
        refused = []
        for candidate in sorted(candidates, key=lambda c: -c.score):  # stable: ties keep the detector's order
            mask = masks.get(candidate.key, (None, 0.0))[0]
            if mask is None or not mask.any() or len(self.live) >= self.options.max_objects:
                refused.append(candidate.key)
                continue
            if taken and float(masks_iou(mask[None], np.stack(taken)).max()) >= self.options.match_iou:
                refused.append(candidate.key)
                continue
            self.new_track(candidate.key, candidate.class_id, candidate.class_name, candidate.phrase, candidate.score)
            taken.append(mask)
        return refused

    def observe(self, frame: ObjectMasks) -> tuple[TrackedFrame, list[int]]:
        """The frame's visible tracks, and the keys of tracks that end on it (lost for ``lost_frames``)."""
        masks = frame.by_id()
        visible, ended = [], []
        for key, track in self.live.items():
            mask, mask_score = masks.get(key, (None, 0.0))
            if mask is not None and mask.any():
                track.lost = 0
                visible.append(TrackedObject(track.id, track.class_id, track.class_name, track.phrase, track.score,
                                             float(mask_score), mask))
                continue
            track.lost += 1
            if track.lost >= self.options.lost_frames:
                ended.append(key)
        for key in ended:
            del self.live[key]
            self.retired.add(key)
        visible.sort(key=lambda o: o.track)
        return TrackedFrame(frame.frame_index, visible), ended


def frame_detections(objects: list[TrackedObject], ids: list[int], hw: tuple[int, int]) -> sv.Detections:
    """Tracked objects of one frame with their video track ids -> ``sv.Detections``, by increasing id.

    ``xyxy`` (N, 4) float32 tight boxes of the masks (XYXY pixels), ``mask`` (N, H, W) bool, ``confidence``
    (N,) the detection score the track was found with, ``class_id`` (N,), ``tracker_id`` (N,) the video's
    track ids, ``data["class_name"]``, ``data["phrase"]`` and ``data["mask_score"]`` (the model's per-frame
    visibility score).
    """
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    objects = [objects[i] for i in order]
    ids = [int(ids[i]) for i in order]
    if not objects:
        return sv.Detections(xyxy=np.zeros((0, 4), dtype=np.float32), mask=np.zeros((0, *hw), dtype=bool),
                             confidence=np.zeros(0, dtype=np.float32), class_id=np.zeros(0, dtype=int),
                             tracker_id=np.zeros(0, dtype=int),
                             data={"class_name": np.array([], dtype=str), "phrase": np.array([], dtype=str),
                                   "mask_score": np.zeros(0, dtype=np.float32)})
    return sv.Detections(
        xyxy=np.asarray([mask_box(o.mask) for o in objects], dtype=np.float32),
        mask=np.stack([o.mask for o in objects]),
        confidence=np.asarray([o.score for o in objects], dtype=np.float32),
        class_id=np.asarray([o.class_id for o in objects], dtype=int),
        tracker_id=np.asarray(ids, dtype=int),
        data={"class_name": np.array([o.class_name for o in objects], dtype=str),
              "phrase": np.array([o.phrase for o in objects], dtype=str),
              "mask_score": np.asarray([o.mask_score for o in objects], dtype=np.float32)},
    )
