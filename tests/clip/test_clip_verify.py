"""CLIP verification: the rules table, masked crops, and a wrong label corrected while a right one is kept."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded.clip.config import VerifyConfig
from grounded.clip.verify import (
    CONFIRMED,
    CORRECTED,
    REJECTED,
    UNCERTAIN,
    ClipScorer,
    decide,
    masked_crop,
    verify_detections,
)
from grounded.errors import InputError
from grounded.ontology import Ontology

# probabilities over [class 0, class 1, class 2, background]; detector's label; expected (status, class)
RULES = [
    ([0.70, 0.20, 0.05, 0.05], 0, (CONFIRMED, 0)),  # CLIP agrees
    ([0.10, 0.80, 0.05, 0.05], 0, (CORRECTED, 1)),  # another class, margin 0.70 >= 0.3
    ([0.35, 0.55, 0.05, 0.05], 0, (UNCERTAIN, 0)),  # another class, margin 0.20 < 0.3: keep the detector's
    ([0.30, 0.60, 0.05, 0.05], 0, (CORRECTED, 1)),  # margin exactly 0.30: corrected
    ([0.05, 0.05, 0.05, 0.85], 2, (REJECTED, -1)),  # background, margin 0.80 >= 0.5: dropped
    ([0.30, 0.05, 0.05, 0.60], 0, (UNCERTAIN, 0)),  # background, margin 0.30 < 0.5: kept
    ([0.20, 0.20, 0.20, 0.40], 1, (UNCERTAIN, 1)),  # nobody sure
    ([0.50, 0.50, 0.00, 0.00], 1, (UNCERTAIN, 1)),  # a tie: argmax picks class 0, margin 0
]


@pytest.mark.parametrize(("probs", "label", "expected"), RULES)
def test_rules_table(probs, label, expected):
    assert decide(np.array(probs), label, VerifyConfig()) == expected


def test_margins_are_configurable():
    probs = np.array([0.35, 0.55, 0.05, 0.05])
    assert decide(probs, 0, VerifyConfig(relabel_margin=0.1)) == (CORRECTED, 1)
    assert decide(np.array([0.3, 0.05, 0.05, 0.6]), 0, VerifyConfig(drop_margin=0.2)) == (REJECTED, -1)
    with pytest.raises(InputError, match="relabel_margin"):
        VerifyConfig(relabel_margin=1.5)


def test_masked_crop_fills_outside_the_mask_and_widens_the_box():
    image = np.zeros((50, 60, 3), np.uint8)
    image[10:30, 20:40] = 255
    mask = np.zeros((50, 60), bool)
    mask[10:30, 20:30] = True  # only the left half of the white square
    crop = masked_crop(image, np.array([20, 10, 40, 30]), mask, VerifyConfig(context=0.1))
    assert crop.shape == (24, 24, 3)  # 20 + 2 * 2 pixels of context each way
    assert (crop[2:22, 2:12] == 255).all()  # inside the mask: the pixels
    assert (crop[2:22, 12:22] == VerifyConfig().fill).all()  # outside: CLIP's mean colour
    edge = masked_crop(image, np.array([0, 0, 5, 5]), None, VerifyConfig())
    assert edge.shape[:2] == (6, 6)  # clipped to the image, no mask: the box as is


class ColourScorer:
    """Stub CLIP: a crop is 'red' or 'blue' by the mean colour of its non-fill pixels; background if grey."""

    def probabilities(self, crops, ontology):
        fill = np.array(VerifyConfig().fill)
        rows = []
        for crop in crops:
            pixels = crop.reshape(-1, 3)
            pixels = pixels[(pixels != fill).any(axis=1)].astype(float)
            r, g, b = pixels.mean(axis=0) if len(pixels) else fill
            scores = {"red": r - b, "blue": b - r}
            logits = np.array([scores.get(c, 0.0) for c in ontology.class_names] + [60 - abs(r - b)]) / 20
            rows.append(np.exp(logits) / np.exp(logits).sum())
        return np.stack(rows)


def _scene():
    image = np.full((60, 100, 3), 128, np.uint8)
    image[10:40, 5:35] = (230, 20, 20)  # a red square
    image[10:40, 60:90] = (20, 20, 230)  # a blue square
    masks = np.zeros((3, 60, 100), bool)
    masks[0, 10:40, 5:35] = masks[1, 10:40, 60:90] = True
    masks[2, 45:58, 40:55] = True  # plain grey: nothing there
    return image, sv.Detections(xyxy=np.array([[5, 10, 35, 40], [60, 10, 90, 40], [40, 45, 55, 58]], np.float32),
                                mask=masks, confidence=np.array([0.9, 0.8, 0.7], np.float32),
                                class_id=np.array([0, 0, 1]),  # red: right; blue labelled "red": wrong
                                data={"class_name": np.array(["red", "red", "blue"]),
                                      "phrase": np.array(["red", "red", "blue"])})


def test_verification_corrects_a_wrong_label_and_keeps_a_right_one():
    image, detections = _scene()
    out = verify_detections(detections, image, Ontology.from_prompt(["red", "blue"]), ColourScorer())
    assert len(out) == 2  # the grey patch (background) is dropped
    assert list(out.data["class_name"]) == ["red", "blue"]
    assert list(out.class_id) == [0, 1]
    assert list(out.data["class_name_detector"]) == ["red", "red"]  # what the detector said is kept
    assert list(out.data["class_id_detector"]) == [0, 0]
    assert list(out.data["verify"]) == [CONFIRMED, CORRECTED]
    assert (out.data["clip_prob"] > 0.5).all()
    assert list(out.data["phrase"]) == ["red", "red"]  # the detector's phrase is left as it was


def test_no_background_texts_never_drops():
    image, detections = _scene()
    config = VerifyConfig(background_texts=())

    class NoBackground(ColourScorer):
        def probabilities(self, crops, ontology):
            probs = super().probabilities(crops, ontology)
            probs[:, -1] = 0  # as ClipScorer does without background texts
            return probs / probs.sum(axis=1, keepdims=True)

    out = verify_detections(detections, image, Ontology.from_prompt(["red", "blue"]), NoBackground(), config)
    assert len(out) == 3


def test_empty_detections_get_the_review_columns():
    image, detections = _scene()
    out = verify_detections(detections[np.zeros(0, int)], image, Ontology.from_prompt(["red", "blue"]), ColourScorer())
    assert len(out) == 0 and len(out.data["verify"]) == 0 and len(out.data["class_name_detector"]) == 0


def test_clip_scorer_probabilities(tiny_clip):
    scorer = ClipScorer(tiny_clip)
    ontology = Ontology.from_prompt(["red", "blue", "green"])
    crops = [np.full((20, 30, 3), v, np.uint8) for v in (0, 128, 255)]
    probs = scorer.probabilities(crops, ontology)
    assert probs.shape == (3, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert scorer.candidates(ontology) is scorer.candidates(ontology)  # class texts encoded once per ontology
