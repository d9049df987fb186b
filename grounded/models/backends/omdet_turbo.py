"""OmDet-Turbo (``OmDetTurboForObjectDetection``, model_type ``omdet-turbo``) as a
:class:`~grounded.models.interfaces.Detector`.

Role: open-vocabulary detector, real-time sized. Checkpoint: ``omlab/omdet-turbo-swin-tiny-hf`` (Swin-T
backbone through timm, CLIP text tower, 640 x 640 input; Apache-2.0). Needs the backends extra
(``pip install "grounded[backends]"``): transformers' ``OmDetTurboProcessor`` exists only with torchvision
(its post-processing runs ``torchvision.ops.batched_nms``), and the released checkpoint's backbone is a timm
model.

OmDet-Turbo takes **one query per phrase** (each phrase is embedded on its own) plus a task sentence
(``"Detect car, wheel, tire."``, the processor's default); each of its Q object queries gets a score for every
phrase. A detection's phrase is the query index it was scored against, exactly, and its class is that
phrase's ontology class: synonyms of one class share the class id.

Split of the work:

- :meth:`OmDetTurboDetector.encode` (image only, once per image): the processor resizes each image to the
  checkpoint's size (640 x 640, aspect ratio not kept), then the vision backbone and the hybrid encoder (the
  image-only FPN/PAN with its transformer layer) run. Their output, ``states`` (3 levels of (B, C, h, w)), is
  everything the decoder reads from the image; nothing that depends on the text runs before it.
- :meth:`OmDetTurboDetector.detect` (per ontology): the text tower embeds the phrases and the task (once for
  all B images), the text-conditioned decoder selects Q queries per image and predicts boxes (normalised
  cxcywh) and (Q, P) phrase logits; transformers' own ``post_process_grounded_object_detection`` turns them
  into boxes.

That post-processing is part of the model's decoding and is kept as is: it takes the top Q (query, phrase)
pairs by sigmoid score (a query may be kept for several phrases), thresholds them and runs NMS **per phrase**
(``batched_nms``) at ``options.nms_iou`` (0.5 by default, its own default), then clips to the image. The
pipeline's NMS (per class or agnostic, ``options.nms``) runs afterwards as for every detector; ``nms="none"``
does not switch off this per-phrase step.

Options: ``box_threshold`` / ``class_box_thresholds`` (and the ontology's) apply to each (box, phrase) score
per class of the phrase; the per-phrase NMS commutes with per-class thresholds, so thresholding after it is
exact. ``text_threshold`` / ``class_text_thresholds`` are refused: there is no per-token score.
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

_NO_TOKEN_SCORE = ("OmDet-Turbo scores a box against a whole phrase (one query per phrase); "
                   "it has no per-token score")


@dataclass
class OmDetTurboFeatures(Features):
    """Image side of OmDet-Turbo for B images: the encoder's multi-scale maps."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    states: list[torch.Tensor]  # per level (B, C, h, w): the hybrid encoder's FPN/PAN output


class OmDetTurboDetector(Detector):
    """OmDet-Turbo processor + model; see the module docstring for shapes and box formats."""

    requires = ("torchvision", "timm")
    refused_options = {"text_threshold": _NO_TOKEN_SCORE, "class_text_thresholds": _NO_TOKEN_SCORE}

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import AutoProcessor, OmDetTurboForObjectDetection

        return AutoProcessor, OmDetTurboForObjectDetection

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """Resized to ``size`` (640 x 640 for the released checkpoint), aspect not kept."""
        return InputSize.fixed(self.processor.image_processor.size)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]) -> OmDetTurboFeatures:
        with self.timer("detector.preprocess"):
            inputs = self.processor.image_processor(images=list(images), return_tensors="pt")
        with self.timer("detector.backbone"), autocast_context(self.device, self.autocast):
            maps = self.model.vision_backbone(inputs.pixel_values.to(self.device, self.dtype))
            states = self.model.encoder(maps, return_dict=True).extracted_states
        return OmDetTurboFeatures([tuple(im.shape[:2]) for im in images], list(states))

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids as the processor makes them: padded to 77, truncated beyond (its ``text_kwargs``)."""
        kwargs = {**type(self.processor).text_kwargs, "return_tensors": "pt"}
        return self.processor.tokenizer(text=texts, **kwargs)

    @torch.inference_mode()
    def detect(self, features: Features, ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        if not isinstance(features, OmDetTurboFeatures):
            raise InputError("OmDet-Turbo detect() needs features from its own encode(), "
                             f"got {type(features).__name__}")
        phrases, phrase_class = map(list, zip(*ontology.phrases(), strict=True))
        limit = type(self.processor).text_kwargs["max_length"]
        for phrase in phrases:
            if len(self.processor.tokenizer(phrase)["input_ids"]) > limit:
                raise InputError(f"phrase {phrase!r} is longer than the {limit} tokens OmDet-Turbo reads: "
                                 "shorten it")
        classes = self._tokens(phrases)
        task = self._tokens([f"Detect {', '.join(phrases)}."])  # the processor's default task sentence
        b, dev = len(features), self.device
        with self.timer("detector.text_fusion_decoder"), autocast_context(dev, self.autocast):
            class_features, task_features, task_mask = self.model.get_language_embedding(
                classes["input_ids"].to(dev), classes["attention_mask"].to(dev), task["input_ids"].to(dev),
                task["attention_mask"].to(dev), torch.tensor([len(phrases)]))
            decoded = self.model.decoder(features.states, class_features.expand(-1, b, -1),
                                         task_features.expand(-1, b, -1), task_mask.expand(b, -1),
                                         return_dict=True)
        with self.timer("postprocess"):
            return self._boxes(decoded, phrases, phrase_class, features, ontology, options)

    def _boxes(self, decoded: Any, phrases: list[str], phrase_class: list[int], features: OmDetTurboFeatures,
               ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        """transformers' post-processing (top (query, phrase) pairs, NMS per phrase), then thresholds."""
        from transformers.models.omdet_turbo.modeling_omdet_turbo import OmDetTurboObjectDetectionOutput

        box_thr, _ = class_thresholds(ontology, options)
        outputs = OmDetTurboObjectDetectionOutput(
            decoder_coord_logits=decoded.decoder_coords[-1].float(),
            decoder_class_logits=decoded.decoder_classes[-1].float(),
            classes_structure=torch.full((len(features),), len(phrases), dtype=torch.long))
        found = self.processor.post_process_grounded_object_detection(
            outputs, threshold=float(box_thr.min()), nms_threshold=options.nms_iou,
            target_sizes=features.image_sizes)
        phrase_class = np.asarray(phrase_class, dtype=int)
        results = []
        for result in found:
            label = result["labels"].cpu().numpy()
            score = result["scores"].float().cpu().numpy()
            class_id = phrase_class[label]
            keep = score > box_thr[class_id]
            xyxy = result["boxes"].float().cpu().numpy()[keep]
            kept_phrases = [phrases[i] for i in label[keep]]
            results.append(labelled_boxes(xyxy, score[keep], class_id[keep], kept_phrases, ontology))
        return results

