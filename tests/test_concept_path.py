"""The Predictor's concept-segmenter path (``model=``) with a stand-in backend passed in already built.

SAM 3's own backend lives in grounded/models/backends/ and has its parity test there; loading by model_type
is tests/test_registry.py's. This file checks what the pipeline does around any concept segmenter: NMS and
max_detections, cropping padded images back, CLIP verification without a SAM, and the refusals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import supervision as sv
import torch

from grounded import Predictor
from grounded.errors import InputError
from grounded.models.acceleration import apply_acceleration, resolve_acceleration
from grounded.models.detections import class_thresholds
from grounded.models.interfaces import ConceptSegmenter, Features, InputSize


@dataclass
class _Features(Features):
    image_sizes: list[tuple[int, int]]


class StandIn(ConceptSegmenter):
    """Per class: a square at the image's top left (score 0.9 - 0.1 * class id) and the same square one pixel
    to the right (score 0.05 lower), so class-wise NMS keeps one per class."""


    def __init__(self):
        super().__init__(torch.nn.Linear(1, 1), processor=None, name="stand-in")

    def input_size(self, hw):
        return InputSize(tuple(hw), tuple(hw))  # images as given: no resize, no padding

    def encode(self, images):
        return _Features([tuple(im.shape[:2]) for im in images])

    def segment(self, features, ontology, options):
        box_thr, _ = class_thresholds(ontology, options)
        results = []
        for h, w in features.image_sizes:
            xyxy, score, cls, masks = [], [], [], []
            for c in range(len(ontology.classes)):
                for shift, drop in ((0, 0.0), (1, 0.05)):
                    s = 0.9 - 0.1 * c - drop
                    if s <= box_thr[c]:
                        continue
                    mask = np.zeros((h, w), bool)
                    mask[: max(1, h // 2), shift : shift + max(1, w // 2)] = True
                    xyxy.append(sv.mask_to_xyxy(mask[None])[0] + [0, 0, 1, 1])
                    score.append(s)
                    cls.append(c)
                    masks.append(mask)
            names = [ontology.classes[c].name for c in cls]
            results.append(sv.Detections(
                xyxy=np.array(xyxy, np.float32).reshape(-1, 4), mask=np.array(masks, bool).reshape(-1, h, w),
                confidence=np.array(score, np.float32), class_id=np.array(cls, int),
                data={"class_name": np.array(names, str), "phrase": np.array(names, str),
                      "mask_score": np.array(score, np.float32)}))
        return results


@pytest.fixture
def stand_in():
    return StandIn()


IMAGE = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)


def test_a_built_concept_segmenter_runs_the_pipeline(stand_in):
    predictor = Predictor(model=stand_in)
    assert predictor.detector is None and predictor.segmenter is None and predictor.model is stand_in
    assert predictor.describe()["model"] == "stand-in" and "detector" not in predictor.describe()
    predictor.set_image(IMAGE)
    found = predictor.segment(["car", "wheel"])
    assert found.data["class_name"].tolist() == ["car", "wheel"]  # class-wise NMS dropped the shifted copies
    assert found.mask.shape == (2, 40, 60)
    assert len(predictor.segment(["car", "wheel"], nms="none")) == 4
    assert len(predictor.segment(["car", "wheel"], nms="none", max_detections=3)) == 3
    assert predictor.segment(["car", "wheel"], nms="agnostic").data["class_name"].tolist() == ["car"]
    assert predictor.segment(["car", "wheel"], nms_on="mask").data["class_name"].tolist() == ["car", "wheel"]
    batch = predictor.segment_batch([IMAGE, IMAGE[:20]], "car")
    assert [b.mask.shape for b in batch] == [(1, 40, 60), (1, 20, 60)]


def test_padded_images_come_back_at_their_size(stand_in):
    predictor = Predictor(model=stand_in)
    predictor.set_image(np.zeros((3, 500, 3), np.uint8))  # padded to 8 x 500 for the model
    found = predictor.segment("car")
    assert found.mask.shape[1:] == (3, 500) and np.all(found.xyxy[:, 3] <= 3)


def test_options_a_concept_segmenter_cannot_take_are_refused(stand_in):
    predictor = Predictor(model=stand_in)
    predictor.set_image(IMAGE)
    with pytest.raises(InputError, match=r"text_tokens=True is not supported by the model .* \(StandIn\)"):
        predictor.segment("car", text_tokens=True)
    with pytest.raises(InputError, match="detector_size .* is not supported by StandIn"):
        apply_acceleration(resolve_acceleration(detector_size=512), stand_in)  # what the builder would apply
    with pytest.raises(InputError, match="already built"):
        Predictor(model=stand_in, detector_size=512)


def test_clip_verification_works_without_a_sam(stand_in, tmp_path):
    from grounded.testing.tiny_clip import build_tiny_clip

    clip = build_tiny_clip(tmp_path / "clip")
    predictor = Predictor(model=stand_in, clip=str(clip))
    predictor.set_image(IMAGE)
    found = predictor.segment(["car", "wheel"], verify="clip")
    assert {"verify", "clip_prob", "class_name_detector"} <= set(found.data)
    assert len(found) <= 2 and set(found.data["verify"]) <= {"confirmed", "corrected", "uncertain"}
