"""CLIP verification of detections (``verify="clip"``): keep, correct or drop what the detector named.

For each detection of an image:

1. **Crop.** The detection's box (XYXY pixels), widened by ``context`` (10 %) of its size on each side and
   clipped to the image; pixels outside the detection's mask are filled with ``fill`` (CLIP's mean colour),
   so CLIP sees the object and not its neighbours. Without masks the box crop is used as is.
2. **Candidates.** Every ontology class, plus one *background* candidate. A class's text embedding is the
   normalised mean of its prompts' embeddings (CLIP's prompt ensembling); its prompts are each phrase put
   into each of the class's ``clip_templates`` (``default_templates`` when it has none). The background
   candidate is built the same way from ``background_texts``.
3. **Probabilities.** ``p = softmax(logit_scale * cosine(crop, candidate))`` over classes + background.
4. **Rules.** With ``c`` the detector's class, ``b`` the most probable candidate and ``margin = p[b] - p[c]``:

   ============  ==============================================  ===========================
   status        condition                                       outcome
   ============  ==============================================  ===========================
   confirmed     ``b == c``                                      kept, label unchanged
   corrected     ``b`` is another class, ``margin >= relabel``    kept, label set to ``b``
   rejected      ``b`` is background, ``margin >= drop``          dropped from the result
   uncertain     any other case (margin too small)               kept, label unchanged
   ============  ==============================================  ===========================

   ``relabel_margin`` (0.3) and ``drop_margin`` (0.5) are deliberately conservative defaults: the detector
   saw the whole image, CLIP only a crop, so CLIP overrules it only when it is clearly more confident.
   They are starting points, not values tuned on a benchmark (no real weights were available here).

Output: ``class_id`` and ``data["class_name"]`` hold the verified label; ``data["class_name_detector"]`` and
``data["class_id_detector"]`` the detector's; ``data["verify"]`` the status and ``data["clip_prob"]`` CLIP's
probability of the final label, so a user can review what changed (``data["verify"] == "corrected"``).
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import supervision as sv
import torch

from grounded.clip.config import VerifyConfig
from grounded.errors import InputError
from grounded.ontology import Ontology

logger = logging.getLogger(__name__)

CONFIRMED, CORRECTED, REJECTED, UNCERTAIN = "confirmed", "corrected", "rejected", "uncertain"
BACKGROUND = -1  # the background candidate's "class id"


class CropScorer(Protocol):
    """What verification needs from CLIP: crops -> (N, n_classes + 1) probabilities, background last."""

    def probabilities(self, crops: list[np.ndarray], ontology: Ontology) -> np.ndarray: ...


def decide(probs: np.ndarray, label: int, config: VerifyConfig) -> tuple[str, int]:
    """One detection's rule (module docstring): probabilities (n_classes + 1,), background last -> (status, class)."""
    n_classes = len(probs) - 1
    best = int(np.argmax(probs))
    margin = float(probs[best] - probs[label])
    if best == label:
        return CONFIRMED, label
    if best < n_classes and margin >= config.relabel_margin:
        return CORRECTED, best
    if best == n_classes and margin >= config.drop_margin:
        return REJECTED, BACKGROUND
    return UNCERTAIN, label


def masked_crop(image: np.ndarray, box: np.ndarray, mask: np.ndarray | None, config: VerifyConfig) -> np.ndarray:
    """RGB (H, W, 3) image, XYXY pixel box, (H, W) bool mask or None -> (h, w, 3) crop, outside-mask filled."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * config.context, (y1 - y0) * config.context
    left, top = int(np.clip(np.floor(x0 - dx), 0, w - 1)), int(np.clip(np.floor(y0 - dy), 0, h - 1))
    right, bottom = int(np.clip(np.ceil(x1 + dx), left + 1, w)), int(np.clip(np.ceil(y1 + dy), top + 1, h))
    crop = image[top:bottom, left:right].copy()
    if mask is not None:
        crop[~mask[top:bottom, left:right]] = np.asarray(config.fill, dtype=image.dtype)
    return crop


def verify_detections(detections: sv.Detections, image: np.ndarray, ontology: Ontology, scorer: CropScorer,
                      config: VerifyConfig | None = None) -> sv.Detections:
    """Apply the rules of the module docstring to one image's detections; returns a new Detections."""
    config = config or VerifyConfig()
    n = len(detections)
    if n == 0:
        out = detections
        for key, empty in (("class_name_detector", np.array([], dtype=str)), ("class_id_detector", np.zeros(0, int)),
                           ("verify", np.array([], dtype=str)), ("clip_prob", np.zeros(0, np.float32))):
            out.data[key] = empty
        return out
    if detections.class_id is None or detections.class_id.max() >= len(ontology):
        raise InputError("verify: detections need class ids of the ontology they were found with")
    masks = detections.mask if detections.mask is not None else [None] * n
    crops = [masked_crop(image, detections.xyxy[k], masks[k], config) for k in range(n)]
    probs = np.asarray(scorer.probabilities(crops, ontology), dtype=np.float64)
    if probs.shape != (n, len(ontology) + 1):
        raise InputError(f"scorer returned shape {probs.shape}, expected ({n}, {len(ontology) + 1})")
    decisions = [decide(probs[k], int(detections.class_id[k]), config) for k in range(n)]
    keep = np.array([status != REJECTED for status, _ in decisions])
    names = [c.name for c in ontology.classes]
    out = detections[keep]
    kept = [d for d, k in zip(decisions, keep, strict=True) if k]
    original_ids = detections.class_id[keep].astype(int)
    new_ids = np.array([cls for _, cls in kept], dtype=int)
    out.data["class_name_detector"] = np.array([names[c] for c in original_ids], dtype=str)
    out.data["class_id_detector"] = original_ids
    out.class_id = new_ids
    out.data["class_name"] = np.array([names[c] for c in new_ids], dtype=str)
    out.data["verify"] = np.array([status for status, _ in kept], dtype=str)
    out.data["clip_prob"] = probs[keep][np.arange(len(new_ids)), new_ids].astype(np.float32)
    counts = {s: sum(st == s for st, _ in decisions) for s in (CONFIRMED, CORRECTED, REJECTED, UNCERTAIN)}
    logger.info("CLIP verification: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))
    return out


class ClipScorer:
    """:class:`CropScorer` backed by a :class:`grounded.clip.encoders.ClipEncoder`."""

    def __init__(self, clip, config: VerifyConfig | None = None) -> None:
        self.clip = clip
        self.config = config or VerifyConfig()
        self._classes: dict[str, torch.Tensor] = {}

    def _ensemble(self, prompts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.clip.encode_texts(prompts).mean(dim=0), dim=0)

    def candidates(self, ontology: Ontology) -> torch.Tensor:
        """(n_classes + 1, D) normalised candidate embeddings, background last (cached per ontology)."""
        key = ontology.fingerprint()
        if key not in self._classes:
            rows = []
            for cls in ontology.classes:
                templates = cls.clip_templates or self.config.default_templates
                rows.append(self._ensemble([t.format(p) for t in templates for p in cls.phrases]))
            background = list(self.config.background_texts)
            rows.append(self._ensemble(background) if background else torch.zeros_like(rows[0]))
            self._classes[key] = torch.stack(rows)
        return self._classes[key]

    def probabilities(self, crops: list[np.ndarray], ontology: Ontology) -> np.ndarray:
        cand = self.candidates(ontology)
        logits = self.clip.logit_scale * self.clip.encode_images(crops) @ cand.T
        if not self.config.background_texts:
            logits[:, -1] = -torch.inf  # no background candidate: never drop
        return logits.softmax(dim=-1).numpy()
