"""Captions and detection selection: token spans, phrase -> class, thresholds, NMS (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertTokenizer

from grounded.config import SegmentOptions
from grounded.models.backends.captions import caption_detections, plan_captions
from grounded.models.detections import cxcywh_to_xyxy
from grounded.ontology import Ontology
from grounded.pipeline import selection

ONTOLOGY = Ontology.from_dict({"classes": [{"name": "wheel", "phrases": ["wheel", "tire"]}, "car", "front bumper"]})


def select_boxes(probs, boxes, captions, ontology, options, image_hw):
    """What segment runs on Grounding DINO's outputs: the backend's span reading, then the pipeline's NMS and
    max_detections."""
    return selection.select_boxes(caption_detections(probs, boxes, captions, ontology, options, image_hw), options)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dirs):
    """The tiny detector's BERT WordPiece (the real vocabulary when ../shared/data is present)."""
    return BertTokenizer.from_pretrained(tiny_model_dirs[0])


def test_caption_spans_cover_exactly_each_phrase(tokenizer):
    (caption,) = plan_captions(ONTOLOGY, tokenizer, max_text_len=256)
    assert caption.text == "wheel . tire . car . front bumper ."
    assert caption.class_ids == (0, 0, 1, 2)
    tokens = tokenizer.convert_ids_to_tokens(list(caption.input_ids))
    assert [" ".join(tokens[s:e]) for s, e in caption.spans] == ["wheel", "tire", "car", "front bumper"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


# caption length = 2 + sum(tokens + 1): wheel 1, tire 1, car 1, front bumper 2 -> 11 in all
@pytest.mark.parametrize("limit, expected", [(256, 1), (11, 1), (10, 2), (8, 2), (6, 3), (5, 4)])
def test_long_prompts_split_not_truncated(tokenizer, limit, expected):
    captions = plan_captions(ONTOLOGY, tokenizer, max_text_len=limit)
    assert len(captions) == expected
    assert all(len(c.input_ids) <= limit for c in captions)
    assert [p for c in captions for p in c.phrases] == ["wheel", "tire", "car", "front bumper"]


def _probs(rows: dict[int, dict[int, float]], queries: int, width: int) -> torch.Tensor:
    """(1, Q, T) probabilities: rows[q][token] = p, 0 elsewhere."""
    p = torch.zeros(1, queries, width)
    for q, tokens in rows.items():
        for t, v in tokens.items():
            p[0, q, t] = v
    return p


# caption "wheel . tire . car . front bumper ." -> spans wheel=[1,2) tire=[3,4) car=[5,6) bumper=[7,9)
@pytest.mark.parametrize(
    "tokens, options, expected",
    [
        ({1: 0.9}, {}, ("wheel", "wheel", 0)),
        ({3: 0.8, 1: 0.5}, {}, ("wheel", "tire", 0)),  # synonym: same class id
        ({5: 0.7, 3: 0.6}, {}, ("car", "car", 1)),
        ({8: 0.6, 7: 0.4}, {}, ("front bumper", "front bumper", 2)),  # best token anywhere in the span
        ({1: 0.3}, {}, None),  # below box threshold 0.35
        ({0: 0.9, 1: 0.1}, {}, None),  # score from [CLS] but the phrase itself is below text threshold
        ({0: 0.9, 1: 0.3}, {}, ("wheel", "wheel", 0)),  # score 0.9 (max over all tokens), phrase 0.3 > 0.25
        ({5: 0.5}, {"class_box_thresholds": {"car": 0.6}}, None),  # per-class box threshold
        ({5: 0.5}, {"class_text_thresholds": {"car": 0.55}}, None),  # per-class text threshold
        ({1: 0.3}, {"box_threshold": 0.2}, ("wheel", "wheel", 0)),
    ],
)
def test_phrase_to_class(tokenizer, tokens, options, expected):
    (caption,) = plan_captions(ONTOLOGY, tokenizer, 256)
    probs = _probs({0: tokens}, queries=1, width=len(caption.input_ids))
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])
    found = select_boxes(probs, boxes, [caption], ONTOLOGY, SegmentOptions(**options), (100, 200))
    if expected is None:
        assert len(found) == 0
    else:
        assert (found.data["class_name"][0], found.data["phrase"][0], found.class_id[0]) == expected
        assert found.confidence[0] == pytest.approx(max(tokens.values()))


def test_ontology_thresholds_apply_per_class(tokenizer):
    onto = Ontology.from_dict({"classes": [{"name": "wheel", "box_threshold": 0.8}, "car"]})
    (caption,) = plan_captions(onto, tokenizer, 256)  # wheel=[1,2) car=[3,4)
    probs = _probs({0: {1: 0.7}, 1: {3: 0.7}}, queries=2, width=len(caption.input_ids))
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1]]])
    found = select_boxes(probs, boxes, [caption], onto, SegmentOptions(), (100, 100))
    assert found.data["class_name"].tolist() == ["car"]


@pytest.mark.parametrize(
    "nms, kept",
    [("class", ["wheel", "car"]), ("agnostic", ["wheel"]), ("none", ["wheel", "wheel", "car"])],
)
def test_nms_modes(tokenizer, nms, kept):
    (caption,) = plan_captions(ONTOLOGY, tokenizer, 256)
    # three queries on nearly the same box: wheel 0.9, tire (class wheel) 0.8, car 0.7
    probs = _probs({0: {1: 0.9}, 1: {3: 0.8}, 2: {5: 0.7}}, queries=3, width=len(caption.input_ids))
    boxes = torch.tensor([[[0.5, 0.5, 0.4, 0.4], [0.5, 0.5, 0.41, 0.4], [0.5, 0.5, 0.4, 0.39]]])
    found = select_boxes(probs, boxes, [caption], ONTOLOGY, SegmentOptions(nms=nms), (100, 100))
    assert found.data["class_name"].tolist() == kept
    assert np.all(np.diff(found.confidence) <= 0)  # most confident first


def test_max_detections_keeps_the_best(tokenizer):
    (caption,) = plan_captions(ONTOLOGY, tokenizer, 256)
    rows = {q: {1: 0.4 + q / 20} for q in range(6)}
    boxes = torch.tensor([[[0.1 + q * 0.15, 0.5, 0.05, 0.05] for q in range(6)]])
    found = select_boxes(_probs(rows, 6, len(caption.input_ids)), boxes, [caption], ONTOLOGY,
                         SegmentOptions(max_detections=2), (100, 100))
    assert found.confidence.tolist() == pytest.approx([0.65, 0.6])


def test_box_conversion_to_pixels_and_clipping():
    out = cxcywh_to_xyxy(np.array([[0.5, 0.5, 0.5, 0.5], [0.95, 0.5, 0.2, 0.2]]), (100, 200))
    np.testing.assert_allclose(out, [[50, 25, 150, 75], [170, 40, 200, 60]])
