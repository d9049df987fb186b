"""SAM 2 / 2.1 and EdgeTAM as segmenters: multi-level image features once, then box prompts -> masks.

Checkpoints (``model_type`` in config.json -> class):

- ``sam2_video`` as published (``facebook/sam2.1-hiera-tiny`` / ``-small`` / ``-base-plus`` / ``-large``,
  Apache-2.0: video models whose weights hold the image model), or ``sam2``. ``Sam2Model`` + ``Sam2Processor``.
- ``edgetam_video`` as published (``yonigozlan/EdgeTAM-hf``: EdgeTAM, a RepViT-M1 backbone through timm;
  Apache-2.0), or ``edgetam``. ``EdgeTamModel`` + ``Sam2Processor``.

The image class reads a video checkpoint's image weights (all of them: tests/backends/test_published_shapes.py)
and ignores its memory; transformers' warning about the other model_type is silenced (grounded.models.loading).

Both processors are torchvision classes and EdgeTAM's backbone is a timm model: these backends need
``pip install "grounded[backends]"``; nothing is imported before one of them is chosen.

Shapes and formats (one model family, one code path):

- ``encode``: RGB uint8 (H, W, 3) images -> the processor's ``pixel_values`` (B, 3, 1024, 1024) (resized
  to the square, no padding) -> ``Sam2Features.embeddings``: the levels the mask decoder reads, finest
  first, as ``Sam2Model.get_image_embeddings`` returns them: (B, 32, 256, 256), (B, 64, 128, 128) (already
  projected by the decoder's ``conv_s0``/``conv_s1``) and (B, 256, 64, 64) for the released checkpoints.
- ``decode``: N boxes **XYXY in pixels of the original image**, mapped into the model's frame by the
  processor itself -> mask logits (N, K, 256, 256) and predicted IoU (N, K); K = 3 when ``multimask``, else
  1 (SAM 2 then picks among its masks by stability, as transformers does).
- ``upscale``: (N, 256, 256) logits -> (N, H, W) bool masks through the processor's ``post_process_masks``
  (bilinear resize to the original size, ``logit > threshold``).
- ``probabilities`` (only when asked: ``grounded label --soft-masks``): the same resize to a given (h, w), then a
  sigmoid -> (N, h, w) float32 mask probabilities.
- ``decode_points``: one object's clicks (XY pixels, labels 1 / 0), optional box and previous low-res logits
  (:class:`~grounded.models.interfaces.PointPrompt`), mapped by the processor -> logits (1, K, 256, 256), IoU (1, K).

Options: every box-prompted option is honoured (``multimask``, ``mask_threshold``, ``sam_box_batch``);
``text_tokens`` is refused (the CLIP text-prompt adapters are trained for SAM's prompt encoder). Stages are
timed under SAM's names (``sam.preprocess``, ``sam.image_encoder``, ``sam.prompt_mask_decoder``,
``mask_upsampling``), so the pipeline benchmark's columns hold for every segmenter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from grounded.models.acceleration import autocast_context
from grounded.models.backends.sam import mask_to_prior
from grounded.models.interfaces import Features, InputSize, PointPrompt, Segmenter


def writable(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images, copying read-only ones: torchvision processors call torch.from_numpy, which warns on those."""
    return [image if image.flags.writeable else image.copy() for image in images]


@dataclass
class Sam2Features(Features):
    """Image features of B images for the SAM 2 mask decoder."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    embeddings: list[torch.Tensor]  # per level (B, C_l, h_l, w_l), finest first; the last is the main embedding

    def image(self, index: int) -> list[torch.Tensor]:
        """The levels of image ``index``, each (1, C_l, h_l, w_l)."""
        return [level[index : index + 1] for level in self.embeddings]


class Sam2Segmenter(Segmenter):
    """SAM 2 / 2.1: Hiera image encoder + FPN once per image, then box prompts; see the module docstring."""

    compile_modules: ClassVar[tuple[str, ...]] = ("mask_decoder",)  # Acceleration.compile

    requires: ClassVar[tuple[str, ...]] = ("torchvision",)  # Sam2Processor is a torchvision class

    @classmethod
    def model_class(cls) -> Any:
        from transformers import Sam2Model

        return Sam2Model

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import Sam2Processor

        return Sam2Processor, cls.model_class()

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """Resized to ``size`` (1024 x 1024 for the released checkpoints), aspect not kept, no padding."""
        return InputSize.fixed(self.processor.image_processor.size)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> Sam2Features:
        """B images -> multi-level embeddings (see the module docstring)."""
        with self.timer("sam.preprocess"):
            out = self.processor(images=writable(images), return_tensors="pt")
            pixel_values = out["pixel_values"].to(self.device, self.dtype)
        with self.timer("sam.image_encoder"), autocast_context(self.device, self.autocast):
            levels = self.model.get_image_embeddings(pixel_values)
        sizes = [(int(h), int(w)) for h, w in out["original_sizes"].tolist()]
        return Sam2Features(image_sizes=sizes, embeddings=list(levels))

    @torch.inference_mode()
    def decode(self, features: Sam2Features, index: int, boxes_xyxy: np.ndarray, multimask: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """N boxes (N, 4) XYXY pixels on image ``index`` -> logits (N, K, 4h, 4w), predicted IoU (N, K)."""
        boxes_xyxy = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        levels = features.image(index)
        if len(boxes_xyxy) == 0:
            k, (h, w) = (3 if multimask else 1), levels[-1].shape[-2:]
            return torch.zeros(0, k, 4 * h, 4 * w), torch.zeros(0, k)
        hw = features.image_sizes[index]
        prompts = self.processor(original_sizes=[list(hw)], input_boxes=[boxes_xyxy.tolist()], return_tensors="pt")
        input_boxes = prompts["input_boxes"].to(self.device, self.dtype)  # (1, N, 4) in the model's frame
        with self.timer("sam.prompt_mask_decoder"), autocast_context(self.device, self.autocast):
            out = self.model(image_embeddings=levels, input_boxes=input_boxes, multimask_output=multimask)
        return out.pred_masks[0].float(), out.iou_scores[0].float()

    takes_points: ClassVar[bool] = True

    @torch.inference_mode()
    def decode_points(self, features: Sam2Features, index: int, prompt: PointPrompt, multimask: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One object's clicks (+ box, + previous low-res logits) -> logits (1, K, 4h, 4w), IoU (1, K); points and
        box mapped into the model's frame by the processor itself."""
        hw = features.image_sizes[index]
        given: dict[str, Any] = {}
        if len(prompt.points):
            given.update(input_points=[[prompt.points.tolist()]], input_labels=[[prompt.labels.tolist()]])
        if prompt.box is not None:
            given["input_boxes"] = [[prompt.box.tolist()]]
        prompts = self.processor(original_sizes=[list(hw)], return_tensors="pt", **given)
        kwargs = {k: prompts[k].to(self.device, self.dtype if k != "input_labels" else prompts[k].dtype)
                  for k in ("input_points", "input_labels", "input_boxes") if k in prompts}
        if prompt.mask_logits is not None:
            kwargs["input_masks"] = prompt.mask_logits.to(self.device, self.dtype)[None, None]  # (1, 1, h, w)
        with self.timer("sam.prompt_mask_decoder"), autocast_context(self.device, self.autocast):
            out = self.model(image_embeddings=features.image(index), multimask_output=multimask, **kwargs)
        return out.pred_masks[0].float(), out.iou_scores[0].float()

    def mask_prior(self, features: Sam2Features, index: int, mask: np.ndarray) -> torch.Tensor:
        """(H, W) bool -> (4h, 4w) logits: SAM 2 resizes the whole image to its square frame (no padding)."""
        h, w = features.embeddings[-1].shape[-2:]
        return mask_to_prior(mask, (4 * h, 4 * w), (4 * h, 4 * w))

    def upscale(self, features: Sam2Features, index: int, logits: torch.Tensor, threshold: float) -> np.ndarray:
        """(N, h, w) logits of image ``index`` -> (N, H, W) bool masks at its original size."""
        hw = features.image_sizes[index]
        if len(logits) == 0:
            return np.zeros((0, *hw), dtype=bool)
        with self.timer("mask_upsampling"):
            masks = self.processor.post_process_masks([logits[None].float().cpu()], [hw], mask_threshold=threshold,
                                                      binarize=True)[0][0]
            return masks.numpy().astype(bool)

    def probabilities(self, features: Sam2Features, index: int, logits: torch.Tensor, size_hw: tuple[int, int]
                      ) -> np.ndarray:
        """(N, h, w) logits of image ``index`` -> (N, h', w') float32 mask probabilities in [0, 1] for the whole
        image at ``size_hw`` (:meth:`upscale`'s resize to ``size_hw``, a sigmoid instead of the threshold)."""
        if len(logits) == 0:
            return np.zeros((0, *size_hw), dtype=np.float32)
        with self.timer("soft_masks"):
            upsampled = self.processor.post_process_masks([logits[None].float().cpu()], [tuple(size_hw)],
                                                          binarize=False)[0][0]
            return torch.sigmoid(upsampled).numpy().astype(np.float32)


class EdgeTamSegmenter(Sam2Segmenter):
    """EdgeTAM: SAM 2's prompt encoder and mask decoder on a timm RepViT backbone; same API as SAM 2."""

    requires: ClassVar[tuple[str, ...]] = ("torchvision", "timm")  # + the timm backbone

    @classmethod
    def model_class(cls) -> Any:
        from transformers import EdgeTamModel

        return EdgeTamModel


class Sam3TrackerSegmenter(Sam2Segmenter):
    """SAM 3's tracker part (``Sam3TrackerModel``, SAM 2's prompt encoder and mask decoder on SAM 3's vision
    encoder): boxes and clicks -> masks, with SAM 2's API; checkpoints of ``model_type`` ``sam3_tracker``."""

    model_types: ClassVar[tuple[str, ...]] = ("sam3_tracker",)

    @classmethod
    def model_class(cls) -> Any:
        from transformers import Sam3TrackerModel

        return Sam3TrackerModel

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3TrackerProcessor

        return Sam3TrackerProcessor, cls.model_class()
