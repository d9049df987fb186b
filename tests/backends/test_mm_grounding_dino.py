"""MM-Grounding-DINO backend: its model class, parity with transformers' own calls, Grounding DINO's options.

The reference: one caption with every phrase (``"wheel . tire . car . front bumper ."``),
``GroundingDinoProcessor`` + ``MMGroundingDinoForObjectDetection`` +
``post_process_grounded_object_detection``,
boxes clipped to the image; a box's phrase = the phrase whose tokens hold its highest probability, its class
= that phrase's ontology class (as tests/test_parity.py does for Grounding DINO). Tolerances: boxes 1e-3 px,
scores 1e-5 (same weights and ops; the backbone output is reused instead of recomputed).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from grounded.config import SegmentOptions
from grounded.ontology import Ontology, OntologyClass
from grounded.testing.tiny_detectors import assert_parity

ONTOLOGY = Ontology((OntologyClass("wheel", ("wheel", "tire")), OntologyClass("car", ("car",)),
                     OntologyClass("front bumper", ("front bumper",))))


@functools.cache
def plain(folder: str):
    """transformers' own processor and model, loaded from the folder as its docs show (once per folder)."""
    from transformers import AutoProcessor, MMGroundingDinoForObjectDetection

    model = MMGroundingDinoForObjectDetection.from_pretrained(folder).eval()
    return AutoProcessor.from_pretrained(folder), model


def reference(folder: str, image: np.ndarray, threshold: float, text_threshold: float = 0.0):
    processor, model = plain(folder)
    phrases = [p for p, _ in ONTOLOGY.phrases()]
    inputs = processor(images=image, text=" . ".join(phrases) + " .", return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    h, w = image.shape[:2]
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=threshold, text_threshold=0.0, target_sizes=[(h, w)])[0]
    spans, pos = [], 1  # [CLS] phrase . phrase . ... [SEP]
    for phrase in phrases:
        n = len(processor.tokenizer(phrase, add_special_tokens=False)["input_ids"])
        spans.append((pos, pos + n))
        pos += n + 1
    probs = outputs.logits[0].sigmoid()
    probs = probs[probs.max(-1).values > threshold]  # the post-processing's rows, in its order
    span_best = torch.stack([probs[:, s:e].max(-1).values for s, e in spans], dim=1)
    best, phrase_idx = span_best.max(1)
    keep = (best > text_threshold).numpy()
    classes = np.array([ONTOLOGY.class_id(phrases[i]) for i in phrase_idx], dtype=int)
    boxes, scores = np.clip(result["boxes"].numpy(), 0, [w, h, w, h]), result["scores"].numpy()
    boxes, scores, classes, phrase_idx = boxes[keep], scores[keep], classes[keep], phrase_idx.numpy()[keep]
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], classes[order], [phrases[i] for i in phrase_idx[order]]


@pytest.fixture(scope="module")
def mm_gd(load_detector, tiny_mm_grounding_dino_dir):
    return load_detector(tiny_mm_grounding_dino_dir)


def test_loads_its_own_model_class(mm_gd):
    from transformers import MMGroundingDinoForObjectDetection

    from grounded.models.backends.mm_grounding_dino import MMGroundingDinoDetector

    assert type(mm_gd) is MMGroundingDinoDetector
    assert type(mm_gd.model) is MMGroundingDinoForObjectDetection  # not Grounding DINO's: its heads differ
    assert mm_gd.refused_options == {}  # every Grounding DINO option, text thresholds included


@pytest.mark.parametrize("index", [0, 1])
def test_parity_with_transformers(mm_gd, tiny_mm_grounding_dino_dir, detector_images, index):
    assert_parity(mm_gd, functools.partial(reference, tiny_mm_grounding_dino_dir), detector_images[index],
                  ONTOLOGY, text_threshold=0.0)


def test_text_threshold_is_honoured(mm_gd, tiny_mm_grounding_dino_dir, detector_images):
    image = detector_images[0]
    scores = reference(tiny_mm_grounding_dino_dir, image, 0.0)[1]
    text_threshold = float(np.median(scores))
    boxes, _, classes, _ = reference(tiny_mm_grounding_dino_dir, image, 0.0, text_threshold)
    assert 0 < len(boxes) < len(scores)
    ours = mm_gd.detect(mm_gd.encode([image]), ONTOLOGY,
                        SegmentOptions(box_threshold=0.0, text_threshold=text_threshold))[0]
    np.testing.assert_allclose(ours.xyxy, boxes, atol=1e-3)
    np.testing.assert_array_equal(ours.class_id, classes)
