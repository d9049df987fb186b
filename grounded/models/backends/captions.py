"""Grounding DINO's text side: captions planned from an ontology, the token span of every phrase, and
the spans read back into labelled boxes (:func:`caption_detections`).

Grounding DINO scores each box against every token of its caption. To know which phrase a box belongs to we
record, while building the caption, which token positions each phrase occupies (its *span*). The caption
``"car . wheel . tire ."`` for an ontology {car: [car], wheel: [wheel, tire]} tokenises to::

    [CLS] car . wheel . tire . [SEP]
      0    1  2   3   4   5  6   7       spans: car=[1,2) -> class 0, wheel=[3,4) -> 1, tire=[5,6) -> 1

A phrase is tokenised on its own and its ids are placed in the caption, so the spans are exact (BERT's
WordPiece splits on white space and punctuation first, so this equals tokenising the whole caption: the
planner checks that it does). When the phrases do not fit in the text encoder's ``max_text_len`` tokens
(256 for the released checkpoints), they are packed greedily into several captions; each caption is one
row of a batched forward pass. Nothing is truncated.
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
from grounded.models.detections import class_thresholds, cxcywh_to_xyxy, empty_detections, labelled_boxes
from grounded.ontology import Ontology


@dataclass(frozen=True)
class Caption:
    """One caption: its text, token ids and, per phrase, the span of tokens it occupies."""

    text: str  # e.g. "car . wheel ."
    input_ids: tuple[int, ...]  # [CLS] ... [SEP]
    spans: tuple[tuple[int, int], ...]  # per phrase: (start, end) token positions, end exclusive
    phrases: tuple[str, ...]  # the phrases, in caption order
    class_ids: tuple[int, ...]  # ontology class id of each phrase


def plan_captions(ontology: Ontology, tokenizer: Any, max_text_len: int) -> list[Caption]:
    """Pack the ontology's phrases into as few captions of at most ``max_text_len`` tokens as possible."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    dot_id = tokenizer.convert_tokens_to_ids(".")
    captions: list[Caption] = []
    ids: list[int] = [cls_id]
    spans: list[tuple[int, int]] = []
    phrases: list[str] = []
    class_ids: list[int] = []

    def close() -> None:
        text = " . ".join(phrases) + " ."
        full = tuple(ids) + (sep_id,)
        check = tuple(tokenizer(text, add_special_tokens=True)["input_ids"])
        if check != full:  # would mean the tokenizer is not WordPiece-like; spans would be wrong
            raise InputError(f"tokenizer splits caption {text!r} differently from its phrases; cannot map spans")
        captions.append(Caption(text, full, tuple(spans), tuple(phrases), tuple(class_ids)))

    for phrase, class_id in ontology.phrases():
        tokens = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise InputError(f"phrase {phrase!r} has no tokens in the detector's vocabulary")
        if 1 + len(tokens) + 1 + 1 > max_text_len:
            raise InputError(
                f"phrase {phrase!r} is {len(tokens)} tokens long; the detector reads at most {max_text_len - 3} "
                "tokens per phrase: shorten it"
            )
        if len(ids) + len(tokens) + 1 + 1 > max_text_len:  # + "." + [SEP]
            close()
            ids, spans, phrases, class_ids = [cls_id], [], [], []
        spans.append((len(ids), len(ids) + len(tokens)))
        ids.extend(tokens)
        ids.append(dot_id)
        phrases.append(phrase)
        class_ids.append(class_id)
    close()
    return captions


def caption_detections(probs: torch.Tensor, boxes: torch.Tensor, captions: Sequence[Caption], ontology: Ontology,
                       options: SegmentOptions, image_hw: tuple[int, int]) -> sv.Detections:
    """One image's caption rows -> labelled boxes, thresholds applied, most confident first (no NMS yet).

    Args:
        probs: (R, Q, T) token probabilities of the R caption rows of one image.
        boxes: (R, Q, 4) normalised cxcywh.
        captions: the R captions (their spans and class ids).
        image_hw: (H, W) of the original image, for pixel coordinates.

    Per query: ``score`` = its highest token probability over the whole caption (as transformers'
    ``post_process_grounded_object_detection`` and the original Grounding DINO compute it); its phrase = the
    phrase whose token span holds the highest probability, its class = that phrase's ontology class (synonyms
    share one class id). Kept when ``score > box_threshold(class)`` and the phrase's own probability
    ``> text_threshold(class)`` (per class: :func:`grounded.models.detections.class_thresholds`).
    """
    box_thr, text_thr = class_thresholds(ontology, options)
    xyxy, scores, class_ids, phrases = [], [], [], []
    for row, caption in enumerate(captions):
        p = probs[row].cpu().numpy()  # (Q, T)
        score = p.max(axis=1)
        span_best = np.stack([p[:, s:e].max(axis=1) for s, e in caption.spans], axis=1)  # (Q, P)
        phrase_idx = span_best.argmax(axis=1)
        phrase_prob = span_best[np.arange(len(p)), phrase_idx]
        class_id = np.asarray(caption.class_ids)[phrase_idx]
        keep = (score > box_thr[class_id]) & (phrase_prob > text_thr[class_id])
        xyxy.append(cxcywh_to_xyxy(boxes[row].cpu().numpy()[keep], image_hw))
        scores.append(score[keep])
        class_ids.append(class_id[keep])
        phrases += [caption.phrases[i] for i in phrase_idx[keep]]
    if not phrases:
        return empty_detections()
    return labelled_boxes(np.concatenate(xyxy), np.concatenate(scores), np.concatenate(class_ids), phrases, ontology)
