"""SAM 3 concept segmenter: all phrases in one call == one standard SAM 3 call per phrase.

The reference, per phrase: ``Sam3Processor(images=image, text=phrase)`` + ``Sam3Model(**inputs)`` +
``processor.post_process_instance_segmentation(outputs, threshold, mask_threshold, target_sizes)``, the way
SAM 3's own API is used (image encoded again for every phrase), boxes clipped to the image, class = the
ontology class of the phrase. Tolerances: scores 1e-5, boxes 1e-3 px (one batched pass vs separate passes:
float rounding only), masks equal on all but 0.1% of pixels (a probability at the threshold may flip).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest_segmenters import MASK_TOLERANCE, load, transformers_pair, two_images

from grounded.config import SegmentOptions
from grounded.errors import InputError, ModelLoadError
from grounded.ontology import Ontology, OntologyClass

# 5 phrases, 3 classes (synonyms share a class)
ONTOLOGY = Ontology((OntologyClass("wheel", ("wheel", "tire")), OntologyClass("car", ("car", "a red truck")),
                     OntologyClass("front bumper", ("front bumper",))))


@pytest.fixture(scope="module")
def tiny_dir(tiny_sam3_dir) -> str:
    return tiny_sam3_dir  # tests/backends/conftest.py


@pytest.fixture(scope="module")
def model(tiny_dir):
    return load(tiny_dir, "model")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return two_images(2)


def reference(folder: str, image: np.ndarray, options: SegmentOptions):
    """One standard SAM 3 call per phrase -> (boxes, scores, classes, phrases, masks), most confident first."""
    processor, sam3 = transformers_pair(folder)
    h, w = image.shape[:2]
    rows = []
    for phrase, class_id in ONTOLOGY.phrases():
        name = ONTOLOGY.classes[class_id].name
        threshold = options.class_box_thresholds.get(name, options.box_threshold)
        inputs = processor(images=image, text=phrase, return_tensors="pt")
        with torch.no_grad():
            outputs = sam3(**inputs)
        result = processor.post_process_instance_segmentation(
            outputs, threshold=threshold, mask_threshold=1 / (1 + math.exp(-options.mask_threshold)),
            target_sizes=[(h, w)])[0]
        for score, box, mask in zip(result["scores"], result["boxes"], result["masks"], strict=True):
            rows.append((float(score), np.clip(box.numpy(), 0, [w, h, w, h]), class_id, phrase, mask.numpy() > 0))
    rows.sort(key=lambda row: -row[0])
    return rows


def check_equal(detections, rows, image_hw):
    assert len(detections) == len(rows) > 0
    np.testing.assert_allclose(detections.confidence, [r[0] for r in rows], atol=1e-5)
    np.testing.assert_allclose(detections.xyxy, np.stack([r[1] for r in rows]), atol=1e-3)
    np.testing.assert_array_equal(detections.class_id, [r[2] for r in rows])
    assert list(detections.data["phrase"]) == [r[3] for r in rows]
    assert list(detections.data["class_name"]) == [ONTOLOGY.classes[r[2]].name for r in rows]
    np.testing.assert_array_equal(detections.data["mask_score"], detections.confidence)
    assert detections.mask.shape == (len(rows), *image_hw) and detections.mask.dtype == bool
    assert (detections.mask != np.stack([r[4] for r in rows])).mean() <= MASK_TOLERANCE


@pytest.mark.parametrize("options", [
    SegmentOptions(box_threshold=0.2),
    # per-class threshold: no "car" instance reaches 0.9; a stricter mask threshold (logit 0.5)
    SegmentOptions(box_threshold=0.2, class_box_thresholds={"car": 0.9}, mask_threshold=0.5),
], ids=["one-threshold", "per-class"])
def test_all_phrases_in_one_call_equal_separate_calls(tiny_dir, model, images, options):
    image = images[0]
    detections = model.segment(model.encode([image]), ONTOLOGY, options)[0]
    rows = reference(tiny_dir, image, options)
    check_equal(detections, rows, image.shape[:2])
    if options.class_box_thresholds:
        assert 1 not in detections.class_id


def test_batching_and_caching_change_nothing(model, images):
    options = SegmentOptions(box_threshold=0.2)
    together = model.segment(model.encode(images), ONTOLOGY, options)
    assert len(together) == 2
    model.phrase_batch = 2  # 5 phrases in passes of 2, 2, 1
    try:
        for i, image in enumerate(images):
            alone = model.segment(model.encode([image]), ONTOLOGY, options)[0]  # text features cached now
            np.testing.assert_allclose(alone.confidence, together[i].confidence, atol=1e-5)
            np.testing.assert_allclose(alone.xyxy, together[i].xyxy, atol=1e-3)
            np.testing.assert_array_equal(alone.class_id, together[i].class_id)
            assert (alone.mask != together[i].mask).mean() <= MASK_TOLERANCE
    finally:
        model.phrase_batch = type(model).phrase_batch


def test_nothing_found_is_empty_with_masks(model, images):
    detections = model.segment(model.encode(images[1:]), ONTOLOGY, SegmentOptions(box_threshold=1.0))[0]
    assert len(detections) == 0 and detections.mask.shape == (0, 88, 56)


def test_refusals_and_errors(tiny_dir, model, images):
    for option in ("text_threshold", "class_text_thresholds", "multimask", "text_tokens"):
        assert option in model.refused_options
    too_long = Ontology.from_classes([" ".join(["wheel"] * 40)])
    with pytest.raises(InputError, match="tokens long"):
        model.segment(model.encode(images[:1]), too_long, SegmentOptions())

    with pytest.raises(ModelLoadError, match="--model"):
        load(tiny_dir, "segmenter")


def test_through_the_predictor(tiny_dir, images):
    """Predictor(model=...) end to end: NMS off and max_detections high, it returns the backend's own result."""
    from grounded import Predictor

    predictor = Predictor(model=tiny_dir, box_threshold=0.2, nms="none", max_detections=1000)
    backend = predictor.model.segment(predictor.model.encode(images[:1]), ONTOLOGY, SegmentOptions(box_threshold=0.2))
    predictor.set_image(images[0])
    found = predictor.segment(ONTOLOGY)
    assert len(found) == len(backend[0]) > 0
    np.testing.assert_allclose(found.confidence, backend[0].confidence, atol=1e-6)
    np.testing.assert_array_equal(found.mask, backend[0].mask)
    with pytest.raises(InputError, match="text_threshold"):
        predictor.segment(ONTOLOGY, text_threshold=0.5)
