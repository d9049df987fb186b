"""SAM 2 / 2.1 video and EdgeTAM video as video segmenters: box prompts in, every object propagated per frame.

Checkpoints (``model_type`` in config.json -> class), both with ``Sam2VideoProcessor`` (torchvision):

- ``sam2_video``: ``facebook/sam2.1-hiera-tiny`` / ``-small`` / ``-base-plus`` / ``-large``; ``Sam2VideoModel``.
- ``edgetam_video``: ``yonigozlan/EdgeTAM-hf``; ``EdgeTamVideoModel`` (a timm RepViT backbone).

Each frame goes through transformers' own calls: the processor's video processor (:func:`video_pixels`: the
pixels a whole preloaded video would get), ``processor.add_inputs_to_inference_session(session, frame_idx,
obj_ids, input_boxes=...)`` for new objects, ``model(inference_session=session, frame=pixel_values,
frame_idx=...)`` (streamed), then ``processor.post_process_masks`` to the frame's size (``logit > 0``). Objects
admitted on a later frame join the running session; the others are not reset. Tested equal to transformers'
calls on the preloaded video (``init_video_session(video=...)``).

**Bounded memory.** transformers' ``Sam2VideoInferenceSession`` keeps every frame's pixels
(``processed_frames``: 12.6 MB a frame at 1024 px, fp32) and every frame's per-object outputs (memory features,
pointers) for as long as the session lives. The model reads back, for frame t, only the conditioning outputs
(the frame each object was prompted on) and the non-conditioning outputs of frames t-1 ... t-(W) with
W = max(num_maskmem - 1, max_object_pointers_in_encoder - 1) (6 and 15 for the released checkpoints); the
frame's pixels are needed only while it is processed. After each frame, :meth:`Sam2VideoSegmenter.step`
deletes the rest (:func:`prune_session`), so memory is flat in the video's length and results are unchanged
(tested against transformers' unpruned session). Removed objects (refused candidates, ended tracks) are taken
out of the session with their memory (:func:`remove_objects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from grounded.models.backends.sam2 import writable
from grounded.models.base import PretrainedPair
from grounded.video.interfaces import ObjectMasks, VideoSegmenter


def memory_window(config: Any) -> int:
    """Frames back a tracker reads non-conditioning outputs from (memories and object pointers)."""
    return max(int(config.num_maskmem) - 1, int(config.max_object_pointers_in_encoder) - 1, 1)


def prune_session(session: Any, frame_index: int, window: int) -> None:
    """Delete what frames after ``frame_index`` will never read: older pixels, older non-conditioning outputs."""
    frames = session.processed_frames
    if frames:
        for index in [i for i in frames if i < frame_index]:
            del frames[index]
    oldest = frame_index - window
    for per_object in session.output_dict_per_obj.values():
        stale = [t for t in per_object["non_cond_frame_outputs"] if t < oldest]
        for t in stale:
            del per_object["non_cond_frame_outputs"][t]
    for tracked in session.frames_tracked_per_obj.values():
        for t in [t for t in tracked if t < oldest]:
            del tracked[t]


def video_pixels(processor: Any, frame: np.ndarray) -> torch.Tensor:
    """(3, S, S) pixel values of one RGB (H, W, 3) frame, prepared by the processor's *video* processor as it
    prepares a whole video (its image processor resizes differently: results would not match)."""
    clip = writable([frame])[0][None]
    return processor.video_processor(videos=[clip], return_tensors="pt")["pixel_values_videos"][0][0]


def remove_objects(session: Any, obj_ids: Sequence[int]) -> None:
    """Take objects out of a SAM 2 / EdgeTAM video session (their inputs, outputs and memory), re-indexing the
    others, as ``Sam3VideoInferenceSession.remove_object`` does (the SAM 2 session has no such method)."""
    drop = {int(i) for i in obj_ids} & set(session.obj_ids)
    if not drop:
        return
    keep = [i for i in session.obj_ids if i not in drop]
    old_index = {obj_id: session.obj_id_to_idx(obj_id) for obj_id in session.obj_ids}
    for name in ("point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj"):
        old = getattr(session, name)
        setattr(session, name, {new: old[old_index[obj_id]] for new, obj_id in enumerate(keep)})
    session._obj_id_to_idx.clear()
    session._obj_idx_to_id.clear()
    for new, obj_id in enumerate(keep):
        session._obj_id_to_idx[obj_id] = new
        session._obj_idx_to_id[new] = obj_id
    session.obj_ids = list(keep)
    session.obj_with_new_inputs = [i for i in session.obj_with_new_inputs if i not in drop]


@dataclass
class Sam2VideoSession:
    """A transformers inference session and the frame size it serves."""

    inference: Any
    hw: tuple[int, int]


class Sam2VideoSegmenter(PretrainedPair, VideoSegmenter):
    """SAM 2 / 2.1 video (``Sam2VideoModel`` + ``Sam2VideoProcessor``); see the module docstring."""

    role: ClassVar[str] = "segmenter"  # the flag it is given with (load errors name it)
    model_types: ClassVar[tuple[str, ...]] = ("sam2_video",)
    requires: ClassVar[tuple[str, ...]] = ("torchvision",)

    def __init__(self, model: torch.nn.Module, processor: Any, name: str = "") -> None:
        super().__init__(model, processor, name)
        self.window = memory_window(model.config)

    @classmethod
    def model_class(cls) -> Any:
        from transformers import Sam2VideoModel

        return Sam2VideoModel

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import Sam2VideoProcessor

        return Sam2VideoProcessor, cls.model_class()

    def start(self, hw: tuple[int, int]) -> Sam2VideoSession:
        inference = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        return Sam2VideoSession(inference, (int(hw[0]), int(hw[1])))

    @torch.inference_mode()
    def step(self, session: Sam2VideoSession, frame_index: int, frame: np.ndarray, boxes_xyxy: np.ndarray,
             new_ids: Sequence[int]) -> ObjectMasks:
        inference = session.inference
        new_ids = [int(i) for i in new_ids]
        if not new_ids and inference.get_obj_num() == 0:
            return ObjectMasks.empty(frame_index, session.hw)  # nothing to track: the model is not run
        pixels = video_pixels(self.processor, frame)
        if new_ids:
            boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
            self.processor.add_inputs_to_inference_session(inference, frame_idx=frame_index, obj_ids=new_ids,
                                                           input_boxes=[boxes.tolist()], original_size=session.hw)
        out = self.model(inference_session=inference, frame=pixels.to(self.device, self.dtype), frame_idx=frame_index)
        masks = self.processor.post_process_masks([out.pred_masks.float().cpu()], original_sizes=[list(session.hw)],
                                                  binarize=True)[0][:, 0]
        scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        prune_session(inference, frame_index, self.window)
        return ObjectMasks(frame_index, np.asarray(out.object_ids, dtype=np.int64), masks.numpy().astype(bool),
                           scores.astype(np.float32))

    def remove(self, session: Sam2VideoSession, obj_ids: Sequence[int]) -> None:
        remove_objects(session.inference, obj_ids)

    def close(self, session: Sam2VideoSession) -> None:
        session.inference.reset_inference_session()


class EdgeTamVideoSegmenter(Sam2VideoSegmenter):
    """EdgeTAM video (``EdgeTamVideoModel`` + ``Sam2VideoProcessor``); same calls as SAM 2."""

    model_types: ClassVar[tuple[str, ...]] = ("edgetam_video",)
    requires: ClassVar[tuple[str, ...]] = ("torchvision", "timm")

    @classmethod
    def model_class(cls) -> Any:
        from transformers import EdgeTamVideoModel

        return EdgeTamVideoModel
