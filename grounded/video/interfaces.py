"""The two video roles a model can play, and what a frame's result looks like.

- :class:`VideoSegmenter` (SAM 2 video, EdgeTAM video): box prompts admit objects into a session with a memory;
  each frame, every object of the session is propagated (its mask on that frame). Objects can be admitted on
  any frame without resetting the others, and removed. A detector (any of grounded's) supplies the boxes.
- :class:`ConceptVideoModel` (SAM 3 video): text in, tracked masks out; the model finds new objects and ends
  lost ones itself. It may hold a frame's result back for ``hold_back`` frames (SAM 3 confirms new objects
  over 15 frames before reporting them), so :meth:`~ConceptVideoModel.step` returns the frames it releases.

Sessions are opaque objects owned by the caller: one per chunk of video (grounded/video/chunks.py), several
alive at once where chunks overlap. Frames are RGB uint8 (H, W, 3) in display orientation; ``frame_index``
counts from the video's first frame. Masks are (N, H, W) bool at the frame's resolution.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass
class ObjectMasks:
    """What a video model reports for one frame: N objects of its session.

    ``obj_ids`` (N,) int: the session's object ids (not the track ids users see: grounded/video/tracks.py maps
    them). ``masks`` (N, H, W) bool. ``scores`` (N,) float32 in [0, 1]: the model's confidence that the object
    is visible on this frame (SAM 2: sigmoid of its object score logit; SAM 3: its detection score).
    ``labels`` (N,) int: the phrase index each object was found with (concept models), else None.
    """

    frame_index: int
    obj_ids: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None

    @classmethod
    def empty(cls, frame_index: int, hw: tuple[int, int], labelled: bool = False) -> ObjectMasks:
        return cls(frame_index, np.zeros(0, dtype=np.int64), np.zeros((0, *hw), dtype=bool),
                   np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64) if labelled else None)

    def by_id(self) -> dict[int, tuple[np.ndarray, float]]:
        """Session object id -> (mask (H, W), score)."""
        return {int(i): (self.masks[k], float(self.scores[k])) for k, i in enumerate(self.obj_ids)}


def describe_video_backend(backend: Any) -> dict[str, Any]:
    """JSON-able identity of a video backend (for manifests): name, class and the checkpoint's model_type."""
    config = getattr(getattr(backend, "model", None), "config", None)
    return {"name": backend.name, "backend": type(backend).__name__, "model_type": getattr(config, "model_type", None)}


class VideoSegmenter(ABC):
    """Box-prompted video segmenter with a memory (the "tracker" role). See the module docstring.

    ``hold_back``: frames a result may lag behind its frame (0: each step returns its own frame).
    """

    role: ClassVar[str] = "tracker"
    hold_back: ClassVar[int] = 0
    name: str = ""

    @abstractmethod
    def start(self, hw: tuple[int, int]) -> Any:
        """A new, empty session for frames of size ``hw`` = (H, W)."""

    @abstractmethod
    def step(self, session: Any, frame_index: int, frame: np.ndarray, boxes_xyxy: np.ndarray,
             new_ids: Sequence[int]) -> ObjectMasks:
        """Admit ``new_ids`` (M,) with their box prompts (M, 4) XYXY pixels on this frame, then segment every
        object of the session on this frame (the new ones from their boxes, the others from memory)."""

    @abstractmethod
    def remove(self, session: Any, obj_ids: Sequence[int]) -> None:
        """Drop objects from the session (their memory is freed; other objects' results do not change)."""

    def close(self, session: Any) -> None:  # noqa: B027  (optional: most sessions are freed by the collector)
        """The session is done: free what it holds."""

    def describe(self) -> dict[str, Any]:
        return describe_video_backend(self)


class ConceptVideoModel(ABC):
    """Text-prompted video segmenter and tracker (SAM 3 video). See the module docstring."""

    role: ClassVar[str] = "model"
    hold_back: int = 0
    name: str = ""

    @abstractmethod
    def start(self, hw: tuple[int, int], phrases: Sequence[str]) -> Any:
        """A new session for frames of size ``hw`` finding every phrase (all in this one session)."""

    @abstractmethod
    def step(self, session: Any, frame_index: int, frame: np.ndarray) -> list[ObjectMasks]:
        """Process one frame; return the frames whose results are now final (in order, ``labels`` set)."""

    @abstractmethod
    def finish(self, session: Any) -> list[ObjectMasks]:
        """No more frames: release every result still held back."""

    def close(self, session: Any) -> None:  # noqa: B027
        """The session is done: free what it holds."""

    def describe(self) -> dict[str, Any]:
        return describe_video_backend(self)
