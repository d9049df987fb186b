"""SAM-HQ as a segmenter: SAM's API plus the ViT's early features, for finer mask boundaries.

Checkpoints (``model_type`` ``sam_hq``): ``syscv-community/sam-hq-vit-base`` / ``-large`` / ``-huge``
(Apache-2.0; the HQ-SAM weights of SysCV on SAM's own). ``SamHQModel`` + ``SamHQProcessor`` (SAM's image
processor, PIL or torchvision: no extra needed).

Everything is :class:`grounded.models.backends.sam.SamSegmenter`'s (preprocessing, box frame, decoding in
batches, ``post_process_masks``) except what the HQ mask decoder reads besides SAM's embedding:
``SamHQFeatures.intermediate``, the output of the ViT's first global-attention block, (B, 64, 64, 768) for
ViT-B (1024 for ViT-L, 1280 for ViT-H), kept once per image with the embedding (B, 256, 64, 64). The HQ
token's mask is combined with SAM's (transformers' default, ``hq_token_only=False``).

Options: as SAM's (``multimask``, ``mask_threshold``, ``sam_box_batch``), except ``text_tokens``: the CLIP
adapters of :mod:`grounded.clip` are trained for SAM's mask decoder, not SAM-HQ's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from grounded.models.acceleration import autocast_context
from grounded.models.backends.sam import SamFeatures, SamSegmenter
from grounded.models.interfaces import Segmenter


@dataclass
class SamHQFeatures(SamFeatures):
    """SAM's embeddings of B images plus the early ViT features SAM-HQ's decoder reads."""

    intermediate: torch.Tensor | None = None  # (B, 64, 64, C_vit): the first global-attention block's output


class SamHQSegmenter(SamSegmenter):
    """SAM-HQ processor + model; see the module docstring."""

    refused_options: ClassVar[dict[str, str]] = Segmenter.refused_options  # text_tokens: SAM's adapters only

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import SamHQModel, SamHQProcessor

        return SamHQProcessor, SamHQModel

    def encode(self, images: Sequence[np.ndarray]) -> SamHQFeatures:
        """Preprocess + image encoder over B RGB uint8 images: embeddings and early ViT features."""
        with self.timer("sam.preprocess"):
            pixel_values, original, reshaped = self.preprocess(images)
        with self.timer("sam.image_encoder"):
            embeddings, intermediate = self.embed(pixel_values)
        return SamHQFeatures(embeddings, original, reshaped, intermediate)

    @torch.inference_mode()
    def embed(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> embeddings (B, 256, 64, 64) and the first global block's output (B, 64, 64, C)."""
        with autocast_context(self.device, self.autocast):
            embeddings, intermediate = self.model.get_image_embeddings(pixel_values)
        return embeddings, intermediate[0]  # the decoder reads only the first (SamHQMaskDecoder)

    def image_inputs(self, features: SamHQFeatures, index: int) -> dict[str, Any]:
        return {**super().image_inputs(features, index),
                "intermediate_embeddings": [features.intermediate[index : index + 1].to(self.dtype)]}
