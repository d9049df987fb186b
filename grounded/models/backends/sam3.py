"""SAM 3 as a concept segmenter: every phrase of an ontology in one call, the vision encoder once per image.

Checkpoint: ``facebook/sam3`` (published as ``model_type`` ``sam3_video``, a detector + tracker video model;
``sam3`` image checkpoints too; gated on the Hugging Face hub under Meta's own "SAM License": accept it there,
then download). ``Sam3Model`` + ``Sam3Processor`` (a torchvision image processor: ``pip install
"grounded[backends]"``) and CLIP's BPE tokenizer; ``Sam3Model`` reads a ``sam3_video`` checkpoint's detector
(its config's ``detector_config``, its ``detector_model.*`` weights).

SAM 3's own API takes one phrase per pass (``processor(images=image, text="a wheel")`` then ``model(**inputs)``),
so k phrases cost k vision encoder runs, the encoder being most of the time. Here, as transformers' own
``get_vision_features`` / ``vision_embeds`` split allows:

1. ``encode``: the vision encoder (ViT + FPN) once per image -> ``Sam3Features`` (the FPN levels and their
   position encodings: (B, 256, 288, 288), (B, 256, 144, 144), (B, 256, 72, 72), (B, 256, 36, 36) for 1008 px).
2. ``segment``: the text encoder once for all phrases of the ontology (cached while the ontology repeats),
   then for each image one batched pass of the text-conditioned rest (DETR encoder/decoder, scoring, mask
   decoder) with the image's features repeated once per phrase (``phrase_batch`` phrases per pass bound
   memory, not results), then the processor's own ``post_process_instance_segmentation``.

Row p of the batch is phrase p, so phrase -> class is exact (the ontology's phrase index). Results equal k
separate standard calls (tested: boxes, scores, masks).

Per image, ``segment`` returns ``sv.Detections``: ``xyxy`` (N, 4) XYXY pixels clipped to the image,
``mask`` (N, H, W) bool, ``confidence`` (N,) = SAM 3's instance score (query score x presence score),
``class_id``, ``data["class_name"]``, ``data["phrase"]`` and ``data["mask_score"]`` (N,): SAM 3 predicts no
separate mask quality, so it is the instance score. Most confident first; NMS is the pipeline's.

Options honoured: ``box_threshold`` and per-class box thresholds (on the instance score, ``score > t``),
``mask_threshold`` (a logit, as for SAM: a pixel is in the mask when its probability > sigmoid(threshold);
0.0 is SAM 3's own 0.5), NMS and ``max_detections`` (pipeline), CLIP verification (pipeline). Refused: see
``refused_options`` (``text_tokens`` by every concept segmenter). Stages timed: ``model.preprocess``,
``model.vision_encoder``, ``model.text_encoder``, ``model.decoder`` (the text-conditioned rest),
``model.postprocess``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import supervision as sv
import torch

from grounded.config import SegmentOptions
from grounded.errors import InputError
from grounded.models.acceleration import autocast_context
from grounded.models.backends.sam2 import writable
from grounded.models.detections import class_thresholds, empty_detections
from grounded.models.interfaces import ConceptSegmenter, Features, InputSize
from grounded.ontology import Ontology

_NO_TOKEN_SCORES = "SAM 3 scores each instance against the whole phrase; it has no per-token text score"


@dataclass
class Sam3Features(Features):
    """SAM 3 vision encoder output for B images: what the text-conditioned rest of the model reads."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    fpn_hidden_states: list[torch.Tensor]  # per FPN level (B, C, h_l, w_l), finest first
    fpn_position_encoding: list[torch.Tensor]  # same shapes

    def repeated(self, index: int, times: int) -> Any:
        """Image ``index``'s features repeated ``times`` (one row per phrase), as ``Sam3Model(vision_embeds=)``."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        def rows(levels: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
            return tuple(level[index : index + 1].expand(times, *level.shape[1:]) for level in levels)

        return Sam3VisionEncoderOutput(fpn_hidden_states=rows(self.fpn_hidden_states),
                                       fpn_position_encoding=rows(self.fpn_position_encoding))


class Sam3ConceptSegmenter(ConceptSegmenter):
    """SAM 3 processor + model; see the module docstring."""

    requires: ClassVar[tuple[str, ...]] = ("torchvision",)  # Sam3ImageProcessor is a torchvision class
    refused_options: ClassVar[dict[str, str]] = {
        **ConceptSegmenter.refused_options,
        "text_threshold": _NO_TOKEN_SCORES,
        "class_text_thresholds": _NO_TOKEN_SCORES,
        "multimask": "SAM 3 predicts one mask per instance",
        "sam_box_batch": "SAM 3 takes no box prompts: its instances come from its own queries",
    }
    phrase_batch: int = 16  # phrases per text-conditioned pass (bounds memory; results do not depend on it)

    def __init__(self, model: torch.nn.Module, processor: Any, name: str = "") -> None:
        super().__init__(model, processor, name)
        self._text_cache: tuple[tuple[str, ...], torch.Tensor, torch.Tensor] | None = None
        self._tracker: tuple[Any, str] | None = None

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3Model, Sam3Processor

        return Sam3Processor, Sam3Model

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """Resized to ``size`` (1008 x 1008 for facebook/sam3), aspect not kept, no padding."""
        return InputSize.fixed(self.processor.image_processor.size)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> Sam3Features:
        """Vision encoder over B images, once."""
        with self.timer("model.preprocess"):
            out = self.processor(images=writable(images), return_tensors="pt")
        with self.timer("model.vision_encoder"), autocast_context(self.device, self.autocast):
            vision = self.model.get_vision_features(pixel_values=out["pixel_values"].to(self.device, self.dtype))
        sizes = [(int(h), int(w)) for h, w in out["original_sizes"].tolist()]
        return Sam3Features(sizes, list(vision.fpn_hidden_states), list(vision.fpn_position_encoding))

    def tracker(self) -> tuple[Any, str]:
        """(SAM 3's tracker part as a segmenter that takes clicks and boxes, "") from this very checkpoint, loaded
        once, as ``Sam3TrackerModel.from_pretrained`` reads it (the ``tracker_model.*`` weights of facebook/sam3);
        (None, why) when the checkpoint holds no tracker weights (one saved from ``Sam3Model`` alone)."""
        if self._tracker is None:
            from transformers import Sam3TrackerModel, Sam3TrackerProcessor

            from grounded.models.backends.sam2 import Sam3TrackerSegmenter

            try:
                model, info = Sam3TrackerModel.from_pretrained(self.name, output_loading_info=True,
                                                               local_files_only=True)  # files already here
            except Exception as exc:  # noqa: BLE001  (any config or weights mismatch: no tracker to offer)
                self._tracker = (None, f"SAM 3's tracker cannot be read from {self.name!r} ({type(exc).__name__})")
                return self._tracker
            if info["missing_keys"]:
                self._tracker = (None, f"the SAM 3 checkpoint {self.name!r} holds no tracker weights "
                                       f"({len(info['missing_keys'])} missing)")
                return self._tracker
            processor = Sam3TrackerProcessor(image_processor=self.processor.image_processor)
            segmenter = Sam3TrackerSegmenter(model.to(self.device, self.dtype), processor, self.name)
            segmenter.timer, segmenter.autocast = self.timer, self.autocast
            self._tracker = (segmenter, "")
        return self._tracker

    @torch.inference_mode()
    def text_features(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """P phrases -> projected text features (P, L, D) and attention mask (P, L), L = 32; cached per phrases."""
        key = tuple(phrases)
        if self._text_cache is not None and self._text_cache[0] == key:
            return self._text_cache[1], self._text_cache[2]
        limit = int(self.model.config.text_config.max_position_embeddings)
        for phrase, ids in zip(phrases, self.processor.tokenizer(list(phrases))["input_ids"], strict=True):
            if len(ids) > limit:
                raise InputError(f"phrase {phrase!r} is {len(ids)} tokens long; SAM 3 reads at most {limit} "
                                 f"(with its start/end tokens): shorten it")
        tokens = self.processor(text=list(phrases), return_tensors="pt")
        input_ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        with self.timer("model.text_encoder"), autocast_context(self.device, self.autocast):
            text = self.model.get_text_features(input_ids=input_ids, attention_mask=mask).pooler_output
        self._text_cache = (key, text, mask)
        return text, mask

    @torch.inference_mode()
    def segment(self, features: Sam3Features, ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        """Instances of every ontology class in every image of ``features`` (one Detections per image)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        pairs = ontology.phrases()  # [(phrase, class id)], phrase index = batch row
        phrases = [p for p, _ in pairs]
        class_ids = np.array([c for _, c in pairs], dtype=int)
        row_thresholds = class_thresholds(ontology, options)[0][class_ids]
        text, text_mask = self.text_features(phrases)
        mask_probability = 1.0 / (1.0 + math.exp(-options.mask_threshold))  # logit threshold -> SAM 3's
        results = []
        for index, hw in enumerate(features.image_sizes):
            found: list[tuple[int, dict[str, np.ndarray]]] = []  # (phrase index, kept instances)
            for start in range(0, len(phrases), self.phrase_batch):
                rows = slice(start, min(start + self.phrase_batch, len(phrases)))
                count = rows.stop - rows.start
                with self.timer("model.decoder"), autocast_context(self.device, self.autocast):
                    out = self.model(vision_embeds=features.repeated(index, count),
                                     text_embeds=BaseModelOutputWithPooling(pooler_output=text[rows]),
                                     attention_mask=text_mask[rows])
                with self.timer("model.postprocess"):
                    kept = self.processor.post_process_instance_segmentation(
                        out, threshold=float(row_thresholds[rows].min()), mask_threshold=mask_probability,
                        target_sizes=[hw] * count)
                for offset, instances in enumerate(kept):
                    keep = instances["scores"] > float(row_thresholds[start + offset])  # the processor's own test
                    masks = instances["masks"].bool()  # bool before any copy: the processor's are int64
                    found.append((start + offset, {
                        "scores": instances["scores"][keep].float().cpu().numpy(),
                        "boxes": instances["boxes"][keep].float().cpu().numpy(),
                        "masks": (masks if bool(keep.all()) else masks[keep]).cpu().numpy()}))
            results.append(self._detections(found, phrases, class_ids, ontology, hw))
        return results

    @staticmethod
    def _detections(found: list[tuple[int, dict[str, np.ndarray]]], phrases: list[str], class_ids: np.ndarray,
                    ontology: Ontology, hw: tuple[int, int]) -> sv.Detections:
        """Kept instances of every phrase on one image -> Detections, most confident first (stable)."""
        rows = np.concatenate([np.full(len(inst["scores"]), p, dtype=int) for p, inst in found])
        if len(rows) == 0:
            return empty_detections(hw)
        scores, boxes, masks = (np.concatenate([inst[key] for _, inst in found]) for key in ("scores", "boxes", "masks"))
        order = np.argsort(-scores, kind="stable")
        h, w = hw
        ids = class_ids[rows[order]]
        return sv.Detections(
            xyxy=np.clip(boxes[order], 0, [w, h, w, h]).astype(np.float32),
            mask=masks[order],
            confidence=scores[order].astype(np.float32),
            class_id=ids,
            data={"class_name": np.array([ontology.classes[c].name for c in ids], dtype=str),
                  "phrase": np.array([phrases[p] for p in rows[order]], dtype=str),
                  "mask_score": scores[order].astype(np.float32)},
        )
