"""CLIP in the loop's tools: a CLIP encoder and a text-prompt adapter (the stages of grounded/pipeline/clip_stage.py use them).

``Predictor(..., adapter="ADAPTER_DIR", clip=None)``:

- the adapter is loaded at once and refused (InputError) if it was trained for another SAM;
- CLIP is loaded on first use: ``clip`` when given (name, folder, ``"open_clip:..."`` or an encoder), else the
  CLIP the adapter was trained with, else ``openai/clip-vit-base-patch32``; an adapter refuses another CLIP.

Options served (``SegmentOptions``):

- ``text_tokens=True``: each detection's box tokens + the adapter's tokens for its phrase;
- ``text_tokens="only"``: no detector; one mask per ontology class from its first phrase's tokens alone
  (``xyxy`` = the mask's bounding box, ``confidence`` = SAM's predicted IoU clipped to [0, 1], raw in
  ``data["mask_score"]``; empty masks are left out);
- ``verify="clip"``: :mod:`grounded.clip.verify` on each image's detections (``verify_config`` sets margins).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.clip.adapter import TextPromptAdapter
from grounded.clip.decoding import decode_with_text, pick_best
from grounded.clip.encoders import ClipEncoder, load_clip
from grounded.clip.identity import model_identity
from grounded.clip.verify import ClipScorer, VerifyConfig, verify_detections
from grounded.errors import InputError
from grounded.ontology import Ontology

NO_ADAPTER = ("text_tokens needs a trained text-prompt adapter, and none was given: pass "
              "Predictor(..., adapter='ADAPTER_DIR') or --adapter ADAPTER_DIR (train one with "
              "`grounded train-adapter IMAGES_DIR --ontology ONTOLOGY --out ADAPTER_DIR`)")


def sam_identity(segmenter) -> dict[str, Any]:
    """Identity (:mod:`grounded.clip.identity`) of a :class:`~grounded.models.backends.sam.SamSegmenter`'s model."""
    return model_identity(segmenter.name, segmenter.model, segmenter.model.config)


class ClipTools:
    """CLIP encoder + optional adapter; see the module docstring.

    ``segmenter``: the predictor's SAM-style segmenter (:class:`~grounded.models.backends.sam.SamSegmenter`),
    needed by the adapter's text tokens only; ``verify="clip"`` works on masks and crops alone, with any
    backend (``segmenter=None``, ``device`` given).
    """

    def __init__(self, segmenter=None, clip: str | ClipEncoder | None = None,
                 adapter: str | TextPromptAdapter | None = None, *, device: torch.device | None = None,
                 local_files_only: bool = False, verify_config: VerifyConfig | None = None) -> None:
        self.segmenter = segmenter
        self.device = device if device is not None else segmenter.device
        self.local_files_only = local_files_only
        self.verify_config = verify_config or VerifyConfig()
        self.adapter: TextPromptAdapter | None = None
        if adapter is not None:
            if segmenter is None:
                raise InputError("an adapter (--adapter) gives text tokens to a SAM-style segmenter, and this "
                                 "predictor has none (a concept segmenter, --model, reads text itself); drop --adapter")
            loaded = adapter if isinstance(adapter, TextPromptAdapter) else TextPromptAdapter.load(adapter)
            loaded.check_models(sam=sam_identity(segmenter))
            self.adapter = loaded.to(segmenter.device).eval()
        recorded = self.adapter.clip_identity.get("name") if self.adapter is not None else None
        self._clip_spec = clip if clip is not None else recorded
        self._clip: ClipEncoder | None = None
        self._scorer: ClipScorer | None = None

    @property
    def clip(self) -> ClipEncoder:
        """The CLIP encoder, loaded on first use and checked against the adapter's record."""
        if self._clip is None:
            encoder = load_clip(self._clip_spec, self.device, local_files_only=self.local_files_only)
            if self.adapter is not None:
                self.adapter.check_models(clip=encoder.identity())
            self._clip = encoder
        return self._clip

    def check(self, text_tokens: bool | str) -> None:
        """Refuse text tokens without an adapter (never silently fall back to boxes alone)."""
        if text_tokens and self.adapter is None:
            raise InputError(NO_ADAPTER)

    @torch.inference_mode()
    def text_tokens(self, texts: list[str]) -> torch.Tensor:
        """Texts -> (N, k, C) SAM sparse prompt tokens."""
        self.check(True)
        return self.adapter(self.clip.encode_texts(list(texts)).to(self.device))

    @torch.inference_mode()
    def decode(self, features, index: int, boxes_xyxy: np.ndarray | None, texts: list[str],
               multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Box (XYXY pixels, or None) + text prompts on image ``index`` of the segmenter's ``features`` ->
        (N, K, h, w) logits and (N, K) IoU, as ``SamSegmenter.decode``."""
        return decode_with_text(self.segmenter, self.segmenter.embedding(features, index), boxes_xyxy,
                                features.image_sizes[index], self.text_tokens(texts), multimask)

    def segment_text(self, features, index: int, ontology: Ontology, multimask: bool,
                     mask_threshold: float) -> sv.Detections:
        """Text tokens alone on image ``index``: one mask per class (first phrase), empty masks left out."""
        texts = [cls.phrases[0] for cls in ontology.classes]
        logits, iou = pick_best(*self.decode(features, index, None, texts, multimask))
        masks = self.segmenter.upscale(features, index, logits, mask_threshold)
        keep = masks.reshape(len(masks), -1).any(axis=1)
        score = iou.cpu().numpy().astype(np.float32)[keep]
        ids = np.flatnonzero(keep)
        order = np.argsort(-score, kind="stable")
        ids, score, masks = ids[order], score[order], masks[keep][order]
        return sv.Detections(
            xyxy=sv.mask_to_xyxy(masks).astype(np.float32) if len(ids) else np.zeros((0, 4), np.float32),
            mask=masks, confidence=np.clip(score, 0.0, 1.0), class_id=ids.astype(int),
            data={"class_name": np.array([ontology.classes[c].name for c in ids], dtype=str),
                  "phrase": np.array([texts[c] for c in ids], dtype=str), "mask_score": score.copy()},
        )

    def verify(self, detections: sv.Detections, image: np.ndarray | None, ontology: Ontology) -> sv.Detections:
        """``verify="clip"`` on one image's detections (``image``: its RGB uint8 pixels)."""
        if image is None:
            raise InputError("verify='clip' needs the image's pixels; encode the images with this version's "
                             "Predictor.encode / set_image (the encoding keeps them)")
        if self._scorer is None:
            self._scorer = ClipScorer(self.clip, self.verify_config)
        return verify_detections(detections, image, ontology, self._scorer, self.verify_config)
