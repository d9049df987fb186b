"""OmDet-Turbo backend: parity with transformers' own processor + model + post-processing, and its refusals.

The reference: ``OmDetTurboProcessor(images=image, text=phrases)`` (its default task "Detect a, b.") +
``OmDetTurboForObjectDetection`` + ``post_process_grounded_object_detection`` (top Q (query, phrase) pairs,
threshold, NMS per phrase at 0.5, boxes clipped), class = the ontology class of the phrase index.
Tolerances: boxes 1e-3 px, scores 1e-5 (same weights and ops; the text tower runs once for all images here).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from grounded.config import SegmentOptions
from grounded.ontology import Ontology, OntologyClass
from grounded.testing.tiny_detectors import assert_detections_match, assert_parity

pytest.importorskip("torchvision", reason="OmDet-Turbo's processor needs torchvision (the backends extra)")

ONTOLOGY = Ontology((OntologyClass("wheel", ("wheel", "tire")), OntologyClass("car", ("car",)),
                     OntologyClass("front bumper", ("front bumper",))))


@functools.cache
def plain(folder: str):
    """transformers' own processor and model, loaded from the folder as its docs show (once per folder)."""
    from transformers import AutoProcessor, OmDetTurboForObjectDetection

    return AutoProcessor.from_pretrained(folder), OmDetTurboForObjectDetection.from_pretrained(folder).eval()


def reference(folder: str, image: np.ndarray, threshold: float, nms_threshold: float = 0.5):
    processor, model = plain(folder)
    phrases = [p for p, _ in ONTOLOGY.phrases()]
    inputs = processor(images=image, text=phrases, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs, text_labels=phrases, threshold=threshold, nms_threshold=nms_threshold,
        target_sizes=[image.shape[:2]])[0]
    scores, labels = result["scores"].numpy(), result["labels"].numpy()
    order = np.argsort(-scores, kind="stable")
    classes = np.array([ONTOLOGY.class_id(phrases[i]) for i in labels], dtype=int)
    return result["boxes"].numpy()[order], scores[order], classes[order], [phrases[i] for i in labels[order]]


@pytest.fixture(scope="module")
def omdet(load_detector, tiny_omdet_turbo_dir):
    return load_detector(tiny_omdet_turbo_dir)


@pytest.mark.parametrize("index", [0, 1])
def test_parity_with_transformers(omdet, tiny_omdet_turbo_dir, detector_images, index):
    assert_parity(omdet, functools.partial(reference, tiny_omdet_turbo_dir), detector_images[index], ONTOLOGY)


def test_intrinsic_nms_follows_nms_iou(omdet, tiny_omdet_turbo_dir, detector_images):
    image = detector_images[0]
    expected = reference(tiny_omdet_turbo_dir, image, 0.0, nms_threshold=0.9)
    ours = omdet.detect(omdet.encode([image]), ONTOLOGY, SegmentOptions(box_threshold=0.0, nms_iou=0.9))[0]
    assert_detections_match(ours, *expected)


def test_refuses_text_thresholds(omdet):
    assert set(omdet.refused_options) == {"text_threshold", "class_text_thresholds"}


def test_too_long_phrase_is_an_input_error(omdet, detector_images):
    from grounded.errors import InputError

    with pytest.raises(InputError, match="longer than the 77 tokens"):
        omdet.detect(omdet.encode(detector_images[:1]), Ontology.from_prompt(["wheel " * 80]),
                     SegmentOptions())


def test_missing_torchvision_names_the_extra(tiny_omdet_turbo_dir, monkeypatch):
    import sys

    from grounded.errors import ModelLoadError
    from grounded.models.registry import load_backend

    monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` now raises ImportError
    with pytest.raises(ModelLoadError, match=r'pip install "grounded\[backends\]"'):
        load_backend(tiny_omdet_turbo_dir, "detector", torch.device("cpu"), torch.float32)
