"""Tracking settings, one dataclass: how often to detect, when a track ends, how long videos are cut."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from grounded.errors import InputError


@dataclass(frozen=True)
class TrackOptions:
    """How objects are followed through a video (fields are also ``grounded track`` flags).

    Detector + video segmenter: the detector runs on each chunk's first frame and on frames 0, N, 2N, ... (N =
    ``detect_every``);
    a detection whose mask overlaps a live track by IoU >= ``match_iou`` is that track, any other (with a
    non-empty mask) is admitted as a new track without resetting the others. Every model: a track whose mask
    stays empty for ``lost_frames`` consecutive frames ends, and its id is never used again.

    Long videos are cut into chunks of ``chunk_frames`` frames, consecutive chunks sharing ``chunk_overlap``
    frames; each chunk runs in a fresh model session (memory bounded by the chunk) and is the unit of resume.
    A chunk's track continues the previous chunk's id when their masks' IoU over the overlap (summed
    intersections / summed unions) is >= ``stitch_iou`` (one-to-one, same class).
    """

    detect_every: int = 15
    match_iou: float = 0.5
    lost_frames: int = 30
    max_objects: int = 64  # live tracks per chunk at most (bounds per-frame work); further detections wait
    chunk_frames: int = 300
    chunk_overlap: int = 16
    stitch_iou: float = 0.5

    def __post_init__(self) -> None:
        for name in ("detect_every", "lost_frames", "max_objects", "chunk_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.chunk_overlap, bool) or not isinstance(self.chunk_overlap, int) or self.chunk_overlap < 1:
            raise InputError(f"chunk_overlap must be a positive integer (frames shared by consecutive chunks), "
                             f"got {self.chunk_overlap!r}")
        if self.chunk_overlap >= self.chunk_frames:
            raise InputError(f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_frames "
                             f"({self.chunk_frames})")
        for name in ("match_iou", "stitch_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise InputError(f"{name} must be a number in (0, 1], got {value!r}")

    def check_hold_back(self, hold_back: int, model: str) -> None:
        """The overlap must cover the frames a model holds results back (else a chunk's ids are unconfirmed)."""
        if self.chunk_overlap < hold_back:
            raise InputError(f"chunk_overlap={self.chunk_overlap} is shorter than {model}'s hold-back window "
                             f"({hold_back} frames); use --chunk-overlap {hold_back} or more")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Help text of each field for the command line (grounded/cli/track.py)."""
        return {
            "detect_every": "detector + video segmenter: detect again every N frames (default %(default)s)",
            "match_iou": "a detection overlapping a live track by this mask IoU is that track (default %(default)s)",
            "lost_frames": "end a track whose mask is empty for this many frames; ids are never reused "
                           "(default %(default)s)",
            "max_objects": "live tracks per chunk at most (default %(default)s)",
            "chunk_frames": "frames per chunk: a fresh model session each, the unit of resume (default %(default)s)",
            "chunk_overlap": "frames shared by consecutive chunks to stitch ids (>= the model's hold-back; "
                             "default %(default)s)",
            "stitch_iou": "mask IoU over the overlap for a track to keep its id across chunks (default %(default)s)",
        }
