"""SAM 3 video as a concept video model: every phrase of the ontology found and tracked in one session.

Checkpoint: ``facebook/sam3`` video (``model_type`` ``sam3_video``; gated on the hub under Meta's SAM License).
``Sam3VideoModel`` + ``Sam3VideoProcessor`` (torchvision). SAM 3's own predictor takes one text prompt per
session (adding one resets it); transformers' processor takes a list, so every phrase runs in one session:
one vision encoder pass per frame for all of them, and a phrase's objects carry its index (phrase -> class
exact).

Frames are streamed one at a time (pixels from the processor's video processor, as a preloaded video's), with
the semantics of transformers' ``propagate_in_video_iterator`` (tested equal to it): each frame is added to the
session and ``model(inference_session=..., frame_idx=t)``
runs it with SAM 3's *hotstart* checks (a new object unmatched or duplicated over its first frames is
removed); a frame's result is held back ``hotstart_delay`` frames (15) and post-processed with
``processor.postprocess_outputs`` when released, hiding the objects hotstart removed meanwhile. So the
chunk overlap must be at least 15 frames (checked).

**Bounded memory.** The session keeps every frame's pixels and every frame's tracker outputs; the tracker reads
back only the last W frames' non-conditioning outputs (W = max(num_maskmem - 1, max_object_pointers_in_encoder
- 1)) and its conditioning frames. After each frame the older pixels and outputs are deleted
(grounded/video/backends/sam2_video.py :func:`prune_session`); conditioning frames stay (SAM 3 reconditions
tracks every 16 frames, so they grow with the chunk, not the video). The session's frame store reports the
video as long for the tracker's pointer window (``num_frames``), as a whole preloaded video would.

**Post-processing offline.** Mask NMS, hole filling and small-blob removal run locally
(:mod:`grounded.video.backends.postprocess`), never skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from grounded.models.base import PretrainedPair
from grounded.video.backends import postprocess
from grounded.video.backends.sam2_video import memory_window, prune_session, video_pixels
from grounded.video.interfaces import ConceptVideoModel, ObjectMasks


class FrameStore(dict):
    """The session's ``processed_frames``: holds only recent frames, reports a long video to ``num_frames``
    (the tracker caps its pointer window at ``min(num_frames, max_object_pointers_in_encoder)``)."""

    def __len__(self) -> int:
        return 1 << 30


@dataclass
class Sam3VideoSession:
    inference: Any
    hw: tuple[int, int]
    labels: dict[int, int]  # the session's prompt id -> phrase index
    held: list[Any] = field(default_factory=list)  # model outputs not yet released (hotstart)


class Sam3VideoTracker(PretrainedPair, ConceptVideoModel):
    """SAM 3 video over transformers; see the module docstring."""

    role: ClassVar[str] = "model"
    model_types: ClassVar[tuple[str, ...]] = ("sam3_video",)
    requires: ClassVar[tuple[str, ...]] = ("torchvision",)

    def __init__(self, model: torch.nn.Module, processor: Any, name: str = "") -> None:
        super().__init__(model, processor, name)
        self.hold_back = int(getattr(model, "hotstart_delay", 0) or 0)
        self.window = memory_window(model.tracker_model.config)

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        return Sam3VideoProcessor, Sam3VideoModel

    def start(self, hw: tuple[int, int], phrases: Sequence[str]) -> Sam3VideoSession:
        postprocess.install()
        inference = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        inference.processed_frames = FrameStore()
        inference.video_height, inference.video_width = int(hw[0]), int(hw[1])
        self.processor.add_text_prompt(inference, list(phrases))
        labels = {pid: list(phrases).index(text) for pid, text in inference.prompts.items()}
        return Sam3VideoSession(inference, (int(hw[0]), int(hw[1])), labels)

    @torch.inference_mode()
    def step(self, session: Sam3VideoSession, frame_index: int, frame: np.ndarray) -> list[ObjectMasks]:
        inference = session.inference
        pixels = video_pixels(self.processor, frame)
        inference.add_new_frame(pixels.to(self.device, self.dtype), frame_idx=frame_index)
        out = self.model(inference_session=inference, frame_idx=frame_index)  # offline semantics (hotstart)
        inference.hotstart_removed_obj_ids.update(out.removed_obj_ids)
        prune_session(inference, frame_index, self.window)
        session.held.append(out)
        if self.hold_back > 0 and len(session.held) < self.hold_back:
            return []
        return [self._release(session, session.held.pop(0))]

    def finish(self, session: Sam3VideoSession) -> list[ObjectMasks]:
        released = [self._release(session, out) for out in session.held]
        session.held = []
        return released

    def _release(self, session: Sam3VideoSession, out: Any) -> ObjectMasks:
        """A held frame's result, post-processed now (objects removed by hotstart since then are hidden)."""
        result = self.processor.postprocess_outputs(session.inference, out)
        ids = result["object_ids"].cpu().numpy().astype(np.int64)
        prompt_of = session.inference.obj_id_to_prompt_id
        labels = np.asarray([session.labels[prompt_of[int(i)]] for i in ids], dtype=np.int64)
        return ObjectMasks(int(out.frame_idx), ids, result["masks"].cpu().numpy().astype(bool),
                           result["scores"].float().cpu().numpy().astype(np.float32), labels)

    def close(self, session: Sam3VideoSession) -> None:
        session.inference.reset_state()
        session.held = []
