"""Grounding DINO through transformers (a :class:`~grounded.models.interfaces.Detector`), its backbone run once.

``GroundingDinoDetector`` splits the model's forward pass at the only part that does not depend on the text:
the Swin backbone. :meth:`encode` runs it once; :meth:`detect` plans the ontology's captions
(:mod:`grounded.models.backends.captions`: token spans, the ``max_text_len`` split), runs the text encoder, the
text-fused deformable encoder/decoder and the heads for all of them in one batch (:meth:`score_captions`),
reusing those features, and reads each box's phrase and class back from the token spans
(``text_threshold`` applies there). Everything after the backbone depends on the text, so that is all that
can be shared across prompts on one image.

Tensors, shapes and formats:
- ``pixel_values`` (B, 3, h, w) float, normalised by the processor (RGB, ImageNet mean/std), resized so the
  short side is 800 and the long side at most 1333 for the released checkpoints; ``pixel_mask`` (B, h, w).
- ``score_captions`` returns ``probs`` (R, Q, T): sigmoid token probabilities for Q queries over T text positions
  (padding positions are 0), and ``boxes`` (R, Q, 4) normalised **cxcywh** in [0, 1] relative to each
  image's own (unpadded) size. R is the number of (image, caption) rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch
from torch import nn

from grounded.config import SegmentOptions
from grounded.models.acceleration import autocast_context, set_detector_size
from grounded.models.backends.captions import Caption, caption_detections, plan_captions
from grounded.models.interfaces import Detector, Features, InputSize
from grounded.ontology import Ontology


@dataclass
class DetectorImageFeatures(Features):
    """Backbone output for a batch of B images, reusable for any caption."""

    pixel_values: torch.Tensor  # (B, 3, h, w), the padded batch the backbone saw
    pixel_mask: torch.Tensor  # (B, h, w), 1 on real pixels
    features: list[tuple[torch.Tensor, torch.Tensor]]  # per level: (feature map (B,C,h',w'), mask (B,h',w'))
    position_embeddings: list[torch.Tensor]  # per level: (B, d_model, h', w')
    image_sizes: list[tuple[int, int]]  # (H, W) of each original image


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


class GroundingDinoDetector(Detector):
    """Grounding DINO processor + model; see the module docstring for shapes."""


    def __init__(self, model: nn.Module, processor: Any, name: str = "") -> None:
        super().__init__(model, processor, name)
        self._captions: dict[str, list[Caption]] = {}  # ontology fingerprint -> its captions

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

    def captions_for(self, ontology: Ontology) -> list[Caption]:
        """The ontology's captions (planned once per ontology, then reused)."""
        key = ontology.fingerprint()
        if key not in self._captions:
            self._captions[key] = plan_captions(ontology, self.tokenizer, self.max_text_len)
        return self._captions[key]

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """The processor's resize (short side ``shortest_edge``, long side at most ``longest_edge``: 800 / 1333
        for the released checkpoints, or ``set_input_size``'s); a batch is padded to its largest image, so an
        image alone is given at its resized size."""
        from transformers.image_transforms import get_size_with_aspect_ratio

        size = self.processor.image_processor.size
        resized = get_size_with_aspect_ratio(tuple(hw), int(size["shortest_edge"]), int(size["longest_edge"]))
        return InputSize(resized, resized)

    def set_input_size(self, short_side: int) -> None:
        """Resize inputs to ``short_side`` on the short side, the long side capped at 1333/800 of it."""
        set_detector_size(self.processor.image_processor, short_side)

    # -------------------------------------------------------------------------------------- Detector
    def encode(self, images: Sequence[np.ndarray]) -> DetectorImageFeatures:
        """Preprocess + backbone over B RGB uint8 images."""
        with self.timer("detector.preprocess"):
            pixel_values, pixel_mask = self.preprocess(images)
        with self.timer("detector.backbone"):
            return self.encode_images(pixel_values, pixel_mask, [a.shape[:2] for a in images])

    def detect(self, features: DetectorImageFeatures, ontology: Ontology, options: SegmentOptions
               ) -> list[sv.Detections]:
        """All captions of ``ontology`` x all images of ``features`` in one batched pass; spans -> classes."""
        captions = self.captions_for(ontology)
        rows = [(i, c) for i in range(len(features)) for c in range(len(captions))]
        with self.timer("detector.text_fusion_decoder"):
            probs, boxes = self.score_captions(features, [captions[c].input_ids for _, c in rows],
                                               [i for i, _ in rows])
        results = []
        for i, hw in enumerate(features.image_sizes):
            row_ids = [r for r, (img, _) in enumerate(rows) if img == i]
            with self.timer("postprocess"):
                results.append(caption_detections(probs[row_ids], boxes[row_ids], captions, ontology, options, hw))
        return results

    # -------------------------------------------------------------------------------------- forward
    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB uint8 (H, W, 3) images -> ``pixel_values`` (B, 3, h, w), ``pixel_mask`` (B, h, w) on device."""
        out = self.processor.image_processor(images=list(images), return_tensors="pt")
        return (out["pixel_values"].to(self.device, self.dtype), out["pixel_mask"].to(self.device))

    @torch.inference_mode()
    def encode_images(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor,
                      image_sizes: list[tuple[int, int]]) -> DetectorImageFeatures:
        """Run the backbone once (Swin + position embeddings)."""
        with autocast_context(self.device, self.autocast):
            features, positions = self.model.model.backbone(pixel_values, pixel_mask)
        return DetectorImageFeatures(pixel_values, pixel_mask, list(features), list(positions),
                                     [tuple(hw) for hw in image_sizes])

    @contextmanager
    def _reusing(self, cached: DetectorImageFeatures, rows: torch.Tensor):
        inner = self.model.model.backbone
        self.model.model.backbone = _FixedBackbone(inner, cached, rows)
        try:
            yield
        finally:
            self.model.model.backbone = inner

    @torch.inference_mode()
    def score_captions(
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
