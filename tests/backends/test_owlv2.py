"""OWLv2 backend: parity with transformers' own processor + model + post-processing, and its refusals.

The reference: ``Owlv2Processor(text=[phrases], images=image)`` + ``Owlv2ForObjectDetection`` +
``post_process_grounded_object_detection`` (per box: best query, sigmoid score, boxes scaled to the padded
square), boxes clipped to the image, class = the ontology class of the box's query (phrase) index.
Tolerances: boxes 1e-3 px, scores 1e-5 (same weights, same ops; batched text vs per-image text differs by
float rounding only).
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
    from transformers import AutoProcessor, Owlv2ForObjectDetection

    return AutoProcessor.from_pretrained(folder), Owlv2ForObjectDetection.from_pretrained(folder).eval()


def reference(folder: str, image: np.ndarray, threshold: float):
    processor, model = plain(folder)
    phrases = [p for p, _ in ONTOLOGY.phrases()]
    inputs = processor(text=[phrases], images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    h, w = image.shape[:2]
    result = processor.post_process_grounded_object_detection(
        outputs, threshold=threshold, target_sizes=[(h, w)], text_labels=[phrases])[0]
    boxes = np.clip(result["boxes"].numpy(), 0, [w, h, w, h])
    scores, labels = result["scores"].numpy(), result["labels"].numpy()
    order = np.argsort(-scores, kind="stable")
    classes = np.array([ONTOLOGY.class_id(phrases[i]) for i in labels], dtype=int)
    return boxes[order], scores[order], classes[order], [phrases[i] for i in labels[order]]


@pytest.fixture(scope="module")
def owlv2(load_detector, tiny_owlv2_dir):
    return load_detector(tiny_owlv2_dir)


@pytest.mark.parametrize("index", [0, 1])
def test_parity_with_transformers(owlv2, tiny_owlv2_dir, detector_images, index):
    assert_parity(owlv2, functools.partial(reference, tiny_owlv2_dir), detector_images[index], ONTOLOGY)


def test_refuses_text_thresholds(owlv2):
    assert set(owlv2.refused_options) == {"text_threshold", "class_text_thresholds"}
    assert all("per-token" in why for why in owlv2.refused_options.values())


def test_too_long_phrase_is_an_input_error(owlv2, detector_images):
    from grounded.errors import InputError

    features = owlv2.encode(detector_images[:1])
    with pytest.raises(InputError, match="tokens per phrase"):
        owlv2.detect(features, Ontology.from_prompt(["a very long phrase " * 8]), SegmentOptions())
