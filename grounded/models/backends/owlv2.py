"""OWLv2 (``Owlv2ForObjectDetection``, model_type ``owlv2``) as a grounded Detector.

Role: open-vocabulary detector. Checkpoints: ``google/owlv2-base-patch16-ensemble`` (ViT-B/16, 960 px),
``google/owlv2-large-patch14-ensemble`` and the other ``google/owlv2-*`` (Apache-2.0). Needs nothing beyond
the core install (its image processor runs on torchvision when installed, else on PIL + SciPy).

OWLv2 scores every image patch (a box) against each text query independently, so the ontology is prompted
with **one query per phrase** and a box's phrase is the query it scores highest, exactly (no token spans):
its class is that phrase's ontology class, so synonyms of one class share the class id.

Split of the work:

- :meth:`Owlv2Detector.encode` (image only, once per image): the processor pads each image to a square at
  the bottom/right and resizes it to the checkpoint's size (960 x 960 for the base checkpoints), the ViT runs,
  and the class-head inputs ``image_feats`` (B, N, D) (patch tokens merged with the class token, layer-normed;
  N = (960/16)^2 = 3600) and the boxes ``pred_boxes`` (B, N, 4) are computed. Boxes depend on the image only.
- :meth:`Owlv2Detector.detect` (per ontology): the CLIP text tower embeds the P phrases once (P, D), the class
  head scores them against ``image_feats`` -> logits (B, N, P), and transformers' own
  ``post_process_object_detection`` keeps, per box, its best query: score = sigmoid(max logit), label =
  argmax.

Boxes: the model predicts normalised cxcywh relative to the padded square, so the post-processing scales
them by max(H, W) of the original image; they are then clipped to the image (the contract's XYXY pixels).

Options: ``box_threshold`` / ``class_box_thresholds`` (and the ontology's box thresholds) apply to a box's
score, per class of its best query. ``text_threshold`` / ``class_text_thresholds`` are refused: OWLv2 has no
second, per-token score to threshold. No NMS here (transformers' text-query post-processing has none); the
pipeline applies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.config import SegmentOptions
from grounded.errors import InputError
from grounded.models.acceleration import autocast_context
from grounded.models.detections import class_thresholds, labelled_boxes
from grounded.models.interfaces import Detector, Features, InputSize
from grounded.ontology import Ontology

_NO_TOKEN_SCORE = "OWLv2 scores a box against a whole phrase (one query per phrase); no per-token score"


@dataclass
class Owlv2Features(Features):
    """Image side of OWLv2 for B images: everything except the text queries."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    image_feats: torch.Tensor  # (B, N, D) class-head inputs, one row per patch (= per box)
    pred_boxes: torch.Tensor  # (B, N, 4) normalised cxcywh of the padded square image


class Owlv2Detector(Detector):
    """OWLv2 processor + model; see the module docstring for shapes and box formats."""

    refused_options = {"text_threshold": _NO_TOKEN_SCORE, "class_text_thresholds": _NO_TOKEN_SCORE}

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import AutoProcessor, Owlv2ForObjectDetection

        return AutoProcessor, Owlv2ForObjectDetection

    @property
    def max_text_len(self) -> int:
        """Tokens per phrase the text tower reads, start and end included (16 in released checkpoints)."""
        return int(self.model.config.text_config.max_position_embeddings)

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """Padded to a square of its long side, then resized to ``size`` (960 x 960 for the base checkpoints)."""
        fixed = InputSize.fixed(self.processor.image_processor.size)
        (h, w), (sh, sw), side = hw, fixed.padded, max(hw)
        return InputSize((round(h * sh / side), round(w * sw / side)), fixed.padded)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> Owlv2Features:
        with self.timer("detector.preprocess"):
            inputs = self.processor.image_processor(images=list(images), return_tensors="pt")
        with self.timer("detector.backbone"), autocast_context(self.device, self.autocast):
            pixels = inputs.pixel_values.to(self.device, self.dtype)
            feature_map, _ = self.model.image_embedder(pixel_values=pixels)
            b, h, w, d = feature_map.shape
            image_feats = feature_map.reshape(b, h * w, d)
            pred_boxes = self.model.box_predictor(image_feats, feature_map)
        return Owlv2Features([tuple(im.shape[:2]) for im in images], image_feats, pred_boxes.float())

    def _queries(self, phrases: list[str]) -> dict[str, torch.Tensor]:
        """Token ids of the phrases as the processor pads them: ``input_ids`` / ``attention_mask`` (P, L)."""
        for phrase in phrases:
            n = len(self.processor.tokenizer(phrase)["input_ids"])
            if n > self.max_text_len:
                raise InputError(f"phrase {phrase!r} is {n} tokens long; OWLv2 reads at most "
                                 f"{self.max_text_len} tokens per phrase (start and end included): "
                                 "shorten it")
        return self.processor(text=phrases, return_tensors="pt")

    @torch.inference_mode()
    def detect(self, features: Features, ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        if not isinstance(features, Owlv2Features):
            raise InputError(f"OWLv2 detect() needs features from its own encode(), "
                             f"got {type(features).__name__}")
        phrases, phrase_class = map(list, zip(*ontology.phrases(), strict=True))
        text = self._queries(phrases)
        ids, mask = text["input_ids"].to(self.device), text["attention_mask"].to(self.device)
        b = len(features)
        with self.timer("detector.text_fusion_decoder"), autocast_context(self.device, self.autocast):
            query = self.model.owlv2.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
            query = query / torch.linalg.norm(query, ord=2, dim=-1, keepdim=True)  # as Owlv2Model returns it
            query_mask = (ids[:, 0] > 0).expand(b, -1)  # the model's own test for a padded query
            logits, _ = self.model.class_predictor(features.image_feats, query.expand(b, -1, -1), query_mask)
        with self.timer("postprocess"):
            return self._boxes(logits.float(), features, phrases, phrase_class, ontology, options)

    def _boxes(self, logits: torch.Tensor, features: Owlv2Features, phrases: list[str],
               phrase_class: list[int], ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        """transformers' post-processing (best query per box), then per-class thresholds and clipping."""
        from transformers.models.owlv2.modeling_owlv2 import Owlv2ObjectDetectionOutput

        box_thr, _ = class_thresholds(ontology, options)
        found = self.processor.image_processor.post_process_object_detection(
            outputs=Owlv2ObjectDetectionOutput(logits=logits, pred_boxes=features.pred_boxes),
            threshold=float(box_thr.min()), target_sizes=features.image_sizes)
        phrase_class = np.asarray(phrase_class, dtype=int)
        results = []
        for (h, w), result in zip(features.image_sizes, found, strict=True):
            label = result["labels"].cpu().numpy()
            score = result["scores"].float().cpu().numpy()
            class_id = phrase_class[label]
            keep = score > box_thr[class_id]
            xyxy = np.clip(result["boxes"].float().cpu().numpy()[keep], 0, [w, h, w, h])
            kept_phrases = [phrases[i] for i in label[keep]]
            results.append(labelled_boxes(xyxy, score[keep], class_id[keep], kept_phrases, ontology))
        return results
