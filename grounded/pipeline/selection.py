"""From Grounding DINO's raw outputs to labelled boxes: scores, phrase and class by token span, thresholds.

Rules (per image, per caption row; rows of one image are then concatenated):

1. ``score`` of a query = its highest token probability over the whole caption (as transformers'
   ``post_process_grounded_object_detection`` and the original Grounding DINO compute it).
2. Its phrase = the phrase whose token span holds the highest probability (max over the span's tokens);
   its class = that phrase's ontology class. Synonyms of one class therefore share one class id.
3. Kept when ``score > box_threshold(class)`` and the phrase's own probability ``> text_threshold(class)``.
   Per-class thresholds come from ``SegmentOptions.class_*_thresholds`` (by class name), else the ontology's
   class, else the ontology's defaults, else ``SegmentOptions``.
4. NMS (``nms="class"`` per class, ``"agnostic"`` across classes) on boxes here when ``nms_on="box"``;
   on masks after SAM when ``nms_on="mask"``. Then the ``max_detections`` best are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import supervision as sv
import torch

from grounded.config import SegmentOptions
from grounded.models.detections import class_thresholds, cxcywh_to_xyxy, empty_detections
from grounded.ontology import Ontology
from grounded.pipeline.captions import Caption


def select_boxes(
    probs: torch.Tensor,
    boxes: torch.Tensor,
    captions: Sequence[Caption],
    ontology: Ontology,
    options: SegmentOptions,
    image_hw: tuple[int, int],
) -> sv.Detections:
    """One image's rows -> kept boxes with class, phrase and confidence (no masks yet).

    Args:
        probs: (R, Q, T) token probabilities of R caption rows of the same image.
        boxes: (R, Q, 4) normalised cxcywh.
        captions: the R captions (their spans and class ids).
        image_hw: (H, W) of the original image, for pixel coordinates.
    """
    box_thr, text_thr = class_thresholds(ontology, options)
    parts = []
    for row, caption in enumerate(captions):
        p = probs[row].cpu().numpy()  # (Q, T)
        score = p.max(axis=1)
        span_best = np.stack([p[:, s:e].max(axis=1) for s, e in caption.spans], axis=1)  # (Q, P)
        phrase_idx = span_best.argmax(axis=1)
        phrase_prob = span_best[np.arange(len(p)), phrase_idx]
        class_id = np.asarray(caption.class_ids)[phrase_idx]
        keep = (score > box_thr[class_id]) & (phrase_prob > text_thr[class_id])
        if not keep.any():
            continue
        parts.append(
            sv.Detections(
                xyxy=cxcywh_to_xyxy(boxes[row].cpu().numpy()[keep], image_hw),
                confidence=score[keep].astype(np.float32),
                class_id=class_id[keep].astype(int),
                data={
                    "class_name": np.array([ontology.classes[c].name for c in class_id[keep]], dtype=str),
                    "phrase": np.array([caption.phrases[i] for i in phrase_idx[keep]], dtype=str),
                },
            )
        )
    if not parts:
        return empty_detections()
    found = sv.Detections.merge(parts)
    if options.nms_on == "box":
        found = apply_nms(found, options)
    return top_k(found, options.max_detections)


def apply_nms(detections: sv.Detections, options: SegmentOptions) -> sv.Detections:
    """NMS on masks when present, else boxes; per class or across classes as ``options.nms`` says."""
    if options.nms == "none" or len(detections) < 2:
        return detections
    return detections.with_nms(threshold=options.nms_iou, class_agnostic=options.nms == "agnostic")


def top_k(detections: sv.Detections, k: int) -> sv.Detections:
    """The ``k`` most confident detections, most confident first (stable for ties)."""
    order = np.argsort(-detections.confidence, kind="stable")[:k]
    return detections[order]
