"""SAM through transformers (a :class:`~grounded.models.interfaces.Segmenter`): image embeddings once, then
box prompts decoded in batches.

Shapes and formats:
- ``preprocess``: RGB uint8 (H, W, 3) images -> ``pixel_values`` (B, 3, 1024, 1024): resized so the long
  side is 1024 (``longest_edge`` of the checkpoint's processor), normalised, padded bottom-right.
- ``encode``: -> :class:`SamFeatures`, image embeddings (B, 256, 64, 64) for SAM ViT-B/L/H and SlimSAM.
- ``decode``: image ``index`` of the features and N boxes **XYXY in pixels of the original image**
  -> low-resolution mask logits (N, K, 256, 256) and predicted IoU (N, K), with K = 3 when ``multimask`` else 1.
- ``upscale``: low-resolution logits (N, 256, 256) -> boolean masks (N, H, W) at the original resolution,
  through the processor's ``post_process_masks`` (remove padding, bilinear resize, threshold).
- ``probabilities`` (only when asked: ``grounded label --soft-masks``): the same logits, the same resize but to
  a given (h, w) (the image at a bounded size), through a sigmoid instead of the threshold -> (N, h, w) float32.
- ``decode_points``: one object's clicks (XY pixels, labels 1 / 0), optional box and previous low-res logits
  (:class:`~grounded.models.interfaces.PointPrompt`) -> logits (1, K, 256, 256) and predicted IoU (1, K).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from grounded.models.acceleration import autocast_context
from grounded.models.interfaces import Features, InputSize, PointPrompt, Segmenter


@dataclass
class SamFeatures(Features):
    """SAM's image embeddings of B images."""

    embeddings: torch.Tensor  # (B, C, h, w): (B, 256, 64, 64) for the released SAMs
    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    reshaped_sizes: list[tuple[int, int]]  # (h, w) of each image inside SAM's padded square input


def sam_resized(hw: tuple[int, int], longest_edge: int) -> tuple[int, int]:
    """(H, W) -> (h, w) SAM's processor resizes an image to: the long side ``longest_edge``, aspect kept."""
    h, w = hw
    scale = longest_edge / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def boxes_to_sam_frame(boxes_xyxy: np.ndarray, original_hw: tuple[int, int], longest_edge: int) -> np.ndarray:
    """Scale XYXY pixel boxes (N, 4) of an (H, W) image into SAM's resized frame (long side = longest_edge)."""
    h, w = original_hw
    new_h, new_w = sam_resized(original_hw, longest_edge)
    factors = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float64)
    return np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) * factors


def points_to_sam_frame(points_xy: np.ndarray, original_hw: tuple[int, int], longest_edge: int) -> np.ndarray:
    """Scale XY pixel points (N, 2) of an (H, W) image into SAM's resized frame (long side = longest_edge),
    as SAM's processor does (``_normalize_coordinates``)."""
    h, w = original_hw
    new_h, new_w = sam_resized(original_hw, longest_edge)
    return np.asarray(points_xy, dtype=np.float64).reshape(-1, 2) * np.array([new_w / w, new_h / h])


PRIOR_LOGIT = 10.0  # an existing mask as a prior: this logit inside, its negative outside


def mask_to_prior(mask: np.ndarray, inner_hw: tuple[int, int], frame_hw: tuple[int, int]) -> torch.Tensor:
    """A (H, W) bool mask -> (h, w) float32 logits: resized (bilinear) to ``inner_hw`` at the top left of a
    ``frame_hw`` frame (the rest is outside), +PRIOR_LOGIT inside, -PRIOR_LOGIT outside."""
    inner = torch.nn.functional.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=inner_hw,
                                            mode="bilinear", align_corners=False)[0, 0]
    prior = torch.full(frame_hw, -PRIOR_LOGIT)
    prior[: inner_hw[0], : inner_hw[1]] = (inner * 2 - 1) * PRIOR_LOGIT
    return prior


class SamSegmenter(Segmenter):
    """SAM processor + model; see the module docstring for shapes. Takes SAM-style sparse prompt tokens too
    (``text_tokens`` through a :mod:`grounded.clip` adapter: :meth:`embedding` gives the adapter its input)."""

    compile_modules: ClassVar[tuple[str, ...]] = ("mask_decoder",)  # Acceleration.compile

    refused_options = {}  # text_tokens served through grounded.clip (decode_with_text)

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import SamModel, SamProcessor

        return SamProcessor, SamModel

    @property
    def longest_edge(self) -> int:
        return int(self.processor.image_processor.size["longest_edge"])

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """The long side resized to ``longest_edge``, then padded to ``pad_size`` (1024 x 1024 for the released
        SAMs): every image is given at the same size."""
        pad = self.processor.image_processor.pad_size
        return InputSize(sam_resized(hw, self.longest_edge), (int(pad["height"]), int(pad["width"])))

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]], list[tuple[int, int]]]:
        """-> pixel_values (B, 3, S, S), original sizes [(H, W)], reshaped input sizes [(h, w)]."""
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        return (
            out["pixel_values"].to(self.device, self.dtype),
            [tuple(int(v) for v in s) for s in out["original_sizes"]],
            [tuple(int(v) for v in s) for s in out["reshaped_input_sizes"]],
        )

    def encode(self, images: Sequence[np.ndarray]) -> SamFeatures:
        """Preprocess + image encoder over B RGB uint8 images."""
        with self.timer("sam.preprocess"):
            pixel_values, original, reshaped = self.preprocess(images)
        with self.timer("sam.image_encoder"):
            return SamFeatures(self.embed(pixel_values), original, reshaped)

    def embedding(self, features: SamFeatures, index: int) -> torch.Tensor:
        """Image ``index``'s embedding (1, C, h, w)."""
        return features.embeddings[index : index + 1]

    @torch.inference_mode()
    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> image embeddings (B, 256, 64, 64)."""
        with autocast_context(self.device, self.autocast):
            return self.model.get_image_embeddings(pixel_values)

    @torch.inference_mode()
    def decode(
        self, features: SamFeatures, index: int, boxes_xyxy: np.ndarray, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box prompts on image ``index`` -> mask logits (N, K, 256, 256), predicted IoU (N, K)."""
        boxes = boxes_to_sam_frame(boxes_xyxy, features.image_sizes[index], self.longest_edge)
        input_boxes = torch.as_tensor(boxes, dtype=self.dtype, device=self.device)[None]  # (1, N, 4)
        with self.timer("sam.prompt_mask_decoder"), autocast_context(self.device, self.autocast):
            out = self.model(**self.image_inputs(features, index), input_boxes=input_boxes, multimask_output=multimask)
        return out.pred_masks[0].float(), out.iou_scores[0].float()

    takes_points = True

    @torch.inference_mode()
    def decode_points(self, features: SamFeatures, index: int, prompt: PointPrompt, multimask: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """One object's clicks (+ box, + previous low-res logits) on image ``index`` -> logits (1, K, 256, 256),
        predicted IoU (1, K); as ``model(input_points=, input_labels=, input_boxes=, input_masks=)``."""
        hw, kwargs = features.image_sizes[index], self.image_inputs(features, index)
        if len(prompt.points):
            points = points_to_sam_frame(prompt.points, hw, self.longest_edge)
            kwargs["input_points"] = torch.as_tensor(points, dtype=self.dtype, device=self.device)[None, None]
            kwargs["input_labels"] = torch.as_tensor(prompt.labels, device=self.device)[None, None]  # (1, 1, P)
        if prompt.box is not None:
            box = boxes_to_sam_frame(prompt.box, hw, self.longest_edge)
            kwargs["input_boxes"] = torch.as_tensor(box, dtype=self.dtype, device=self.device)[None]  # (1, 1, 4)
        if prompt.mask_logits is not None:
            kwargs["input_masks"] = prompt.mask_logits.to(self.device, self.dtype)[None, None]  # (1, 1, h, w)
        with self.timer("sam.prompt_mask_decoder"), autocast_context(self.device, self.autocast):
            out = self.model(**kwargs, multimask_output=multimask)
        return out.pred_masks[0].float(), out.iou_scores[0].float()

    def mask_prior(self, features: SamFeatures, index: int, mask: np.ndarray) -> torch.Tensor:
        """(H, W) bool -> (256, 256) logits: the image fills the top-left (h, w) * 256 / 1024 of SAM's frame."""
        side = 4 * features.embeddings.shape[-1]  # the low-res masks are 4x the embedding
        rh, rw = features.reshaped_sizes[index]
        inner = (max(1, round(rh * side / self.longest_edge)), max(1, round(rw * side / self.longest_edge)))
        return mask_to_prior(mask, inner, (side, side))

    def image_inputs(self, features: SamFeatures, index: int) -> dict[str, Any]:
        """What the model's forward reads of image ``index`` besides the prompts (SAM-HQ adds its own)."""
        return {"image_embeddings": self.embedding(features, index).to(self.dtype)}

    def upscale(self, features: SamFeatures, index: int, logits: torch.Tensor, threshold: float) -> np.ndarray:
        """(N, 256, 256) logits of image ``index`` -> (N, H, W) bool masks at the original resolution."""
        original_hw, reshaped_hw = features.image_sizes[index], features.reshaped_sizes[index]
        with self.timer("mask_upsampling"):
            masks = self.processor.image_processor.post_process_masks(
                [logits[None]], [original_hw], [reshaped_hw], mask_threshold=threshold, binarize=True
            )[0][0]
            return masks.cpu().numpy().astype(bool)

    def probabilities(self, features: SamFeatures, index: int, logits: torch.Tensor, size_hw: tuple[int, int]
                      ) -> np.ndarray:
        """(N, 256, 256) logits of image ``index`` -> (N, h, w) float32 mask probabilities in [0, 1] for the whole
        image at ``size_hw``: :meth:`upscale`'s resize (to ``size_hw`` instead of the original size), then a
        sigmoid instead of the threshold."""
        with self.timer("soft_masks"):
            upsampled = self.processor.image_processor.post_process_masks(
                [logits[None].float()], [tuple(size_hw)], [features.reshaped_sizes[index]], binarize=False)[0][0]
            return torch.sigmoid(upsampled).cpu().numpy().astype(np.float32)
