"""Grounding DINO through transformers, with its image backbone computed once per image.

``GroundingDinoDetector`` splits the model's forward pass at the only part that does not depend on the text:
the Swin backbone. :meth:`encode_images` runs it once; :meth:`detect` runs the text encoder, the text-fused
deformable encoder/decoder and the heads for any number of captions, reusing those features (the
backbone is not run again). Everything after the backbone depends on the text, so that is all that can be
shared across prompts on one image.

Tensors, shapes and formats:
- ``pixel_values`` (B, 3, h, w) float, normalised by the processor (RGB, ImageNet mean/std), resized so the
  short side is 800 and the long side at most 1333 for the released checkpoints; ``pixel_mask`` (B, h, w).
- ``detect`` returns ``probs`` (R, Q, T): sigmoid token probabilities for Q queries over T text positions
  (padding positions are 0), and ``boxes`` (R, Q, 4) normalised **cxcywh** in [0, 1] relative to each
  image's own (unpadded) size. R is the number of (image, caption) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from grounded.models.acceleration import autocast_context
from grounded.models.base import PretrainedPair


@dataclass
class DetectorImageFeatures:
    """Backbone output for a batch of B images, reusable for any caption."""

    pixel_values: torch.Tensor  # (B, 3, h, w), the padded batch the backbone saw
    pixel_mask: torch.Tensor  # (B, h, w), 1 on real pixels
    features: list[tuple[torch.Tensor, torch.Tensor]]  # per level: (feature map (B,C,h',w'), mask (B,h',w'))
    position_embeddings: list[torch.Tensor]  # per level: (B, d_model, h', w')

    def __len__(self) -> int:
        return self.pixel_values.shape[0]


class _FixedBackbone(nn.Module):
    """Stands in for the backbone during one forward pass and returns precomputed features.

    ``rows`` maps each row of the forward batch to its image in the cached batch, so one image can be
    paired with several captions without running the backbone again.
    """

    def __init__(self, inner: nn.Module, cached: DetectorImageFeatures, rows: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.cached = cached
        self.rows = rows

    @property
    def position_embedding(self) -> nn.Module:  # used by the model for its extra feature levels
        return self.inner.position_embedding

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor):
        feats = [(f.index_select(0, self.rows), m.index_select(0, self.rows)) for f, m in self.cached.features]
        pos = [p.index_select(0, self.rows) for p in self.cached.position_embeddings]
        return feats, pos  # fresh lists: the model appends to them


class GroundingDinoDetector(PretrainedPair):
    """Grounding DINO processor + model; see the module docstring for shapes."""

    role = "detector"
    model_types = ("grounding-dino",)

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        return AutoProcessor, GroundingDinoForObjectDetection

    # ------------------------------------------------------------------------------------------ props
    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def max_text_len(self) -> int:
        return int(self.model.config.max_text_len)

    # -------------------------------------------------------------------------------------- forward
    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB uint8 (H, W, 3) images -> ``pixel_values`` (B, 3, h, w), ``pixel_mask`` (B, h, w) on device."""
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        return (out["pixel_values"].to(self.device, self.dtype), out["pixel_mask"].to(self.device))

    @torch.inference_mode()
    def encode_images(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> DetectorImageFeatures:
        """Run the backbone once (Swin + position embeddings)."""
        with autocast_context(self.device, self.autocast):
            features, positions = self.model.model.backbone(pixel_values, pixel_mask)
        return DetectorImageFeatures(pixel_values, pixel_mask, list(features), list(positions))

    @contextmanager
    def _reusing(self, cached: DetectorImageFeatures, rows: torch.Tensor):
        inner = self.model.model.backbone
        self.model.model.backbone = _FixedBackbone(inner, cached, rows)
        try:
            yield
        finally:
            self.model.model.backbone = inner

    @torch.inference_mode()
    def detect(
        self, cached: DetectorImageFeatures, input_ids: Sequence[Sequence[int]], image_rows: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score captions against cached images.

        Args:
            cached: backbone features of B images (:meth:`encode_images`).
            input_ids: R captions' token ids ([CLS] ... [SEP]); padded here to one length.
            image_rows: for each caption, the index of its image in ``cached`` (length R).
        Returns:
            probs (R, Q, T) token probabilities, boxes (R, Q, 4) normalised cxcywh.
        """
        width = max(len(ids) for ids in input_ids)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(input_ids), width), pad, dtype=torch.long)
        attention = torch.zeros((len(input_ids), width), dtype=torch.long)
        for i, row in enumerate(input_ids):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
        rows = torch.as_tensor(list(image_rows), dtype=torch.long, device=self.device)
        with self._reusing(cached, rows), autocast_context(self.device, self.autocast):
            out = self.model(
                pixel_values=cached.pixel_values.index_select(0, rows),
                pixel_mask=cached.pixel_mask.index_select(0, rows),
                input_ids=ids.to(self.device),
                attention_mask=attention.to(self.device),
                token_type_ids=torch.zeros_like(ids).to(self.device),
            )
        return out.logits.float().sigmoid(), out.pred_boxes.float()
