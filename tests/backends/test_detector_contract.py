"""Every new detector backend keeps the Detector contract (grounded/models/interfaces.py), table-driven.

- caching changes nothing: one ``encode``, then ``detect`` with two different ontologies, equals a fresh
  ``encode`` + ``detect`` for each;
- batching changes nothing: through the Predictor's path (grounded/models/batching.py: each image encoded on
  its own, detected on ``features.single(i)``) images of one or of different sizes give bit for bit what each
  gives alone; one raw batched call agrees within float rounding for images of one size, and of different sizes
  for backends that resize every image to one fixed input (Grounding DINO's family pads a batch to its largest
  image, and its Swin backbone sees the padding: that is why the Predictor never batches images);
- the registry loads each folder as its backend class with its own transformers model class;
- the output: XYXY pixels inside the image, confidence in [0, 1] and sorted, class ids and phrases that
  belong to the ontology (synonyms share their class's id);
- per-class box thresholds keep exactly the boxes of a threshold-0 run whose score passes their class's;
- the CPU defaults a Predictor applies (``apply_acceleration``: retained memory, the gather form of
  multi-scale deformable attention where a model has it) keep the results.
Tolerances: boxes 1e-3 px, scores 1e-5 (a batch of 2 may round floats differently from a batch of 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from grounded.config import SegmentOptions
from grounded.ontology import Ontology, OntologyClass
from grounded.testing.tiny_detectors import assert_detections_match

# fixture (tiny folder) -> (backend class, transformers model class, batches any image sizes unchanged)
DETECTORS = {
    "tiny_owlv2_dir": ("Owlv2Detector", "Owlv2ForObjectDetection", True),
    "tiny_omdet_turbo_dir": ("OmDetTurboDetector", "OmDetTurboForObjectDetection", True),
    "tiny_mm_grounding_dino_dir": ("MMGroundingDinoDetector", "MMGroundingDinoForObjectDetection", False),
}
CARS = Ontology((OntologyClass("wheel", ("wheel", "tire")), OntologyClass("car", ("car",))))
PETS = Ontology((OntologyClass("dog", ("dog",)), OntologyClass("cat", ("cat", "kitten")),
                 OntologyClass("bird", ("bird",))))
OPTIONS = SegmentOptions(box_threshold=0.05, text_threshold=0.0)


@pytest.fixture(scope="module", params=list(DETECTORS))
def detector(request, load_detector):
    backend = load_detector(request.getfixturevalue(request.param))
    backend.expected = DETECTORS[request.param]
    return backend


def options_for(detector) -> SegmentOptions:
    """OPTIONS without the values a backend refuses (it is given their defaults, as the pipeline would)."""
    return OPTIONS.updated(**{name: getattr(SegmentOptions(), name) for name in detector.refused_options})


def assert_same(a, b) -> None:
    assert_detections_match(a, b.xyxy, b.confidence, b.class_id, b.data["phrase"].tolist())


def test_cached_features_serve_any_ontology(detector, detector_images):
    options = options_for(detector)
    features = detector.encode(detector_images[:1])
    first, second = (detector.detect(features, o, options)[0] for o in (CARS, PETS))
    assert_same(first, detector.detect(detector.encode(detector_images[:1]), CARS, options)[0])
    assert_same(second, detector.detect(detector.encode(detector_images[:1]), PETS, options)[0])
    assert len(first) and len(second), "nothing detected: the comparison would be empty"


def test_loads_as_its_backend_and_model_class(detector):
    backend_class, model_class, _ = detector.expected
    assert (type(detector).__name__, type(detector.model).__name__) == (backend_class, model_class)


@pytest.mark.parametrize("sizes", ["one size", "two sizes"])
def test_batch_equals_each_image_alone(detector, detector_images, sizes):
    from grounded.models.batching import encode_each

    images = detector_images if sizes == "two sizes" else [detector_images[0],
                                                           np.ascontiguousarray(detector_images[0][:, ::-1])]
    options = options_for(detector)
    alone = [detector.detect(detector.encode([image]), CARS, options)[0] for image in images]
    assert sum(map(len, alone)) > 0, "nothing detected: the comparison would be empty"
    features = encode_each(detector, images)
    for i, expected in enumerate(alone):
        ours = detector.detect(features.single(i), CARS, options)[0]
        for key in ("xyxy", "confidence", "class_id"):
            np.testing.assert_array_equal(getattr(ours, key), getattr(expected, key))  # bit for bit
        assert ours.data["phrase"].tolist() == expected.data["phrase"].tolist()
    if sizes == "one size" or detector.expected[2]:  # one raw batched call: within float rounding
        together = detector.detect(detector.encode(images), CARS, options)
        for ours, expected in zip(together, alone, strict=True):
            assert_same(ours, expected)


@pytest.mark.parametrize("ontology", [CARS, PETS], ids=["cars", "pets"])
def test_output_follows_the_contract(detector, detector_images, ontology):
    for image, found in zip(detector_images, detector.detect(detector.encode(detector_images), ontology,
                                                             options_for(detector)), strict=True):
        h, w = image.shape[:2]
        assert found.xyxy.dtype == np.float32 and found.mask is None
        assert (found.xyxy >= 0).all() and (found.xyxy <= [w, h, w, h]).all()
        assert ((found.confidence > OPTIONS.box_threshold) & (found.confidence <= 1)).all()
        assert (np.diff(found.confidence) <= 0).all(), "most confident first"
        labels = zip(found.class_id, found.data["phrase"], found.data["class_name"], strict=True)
        for class_id, phrase, name in labels:
            assert ontology.class_id(phrase) == class_id and ontology.classes[class_id].name == name


def test_per_class_box_thresholds(detector, detector_images):
    features = detector.encode(detector_images[:1])
    everything = detector.detect(features, CARS, options_for(detector).updated(box_threshold=0.0))[0]
    wheels = everything.confidence[everything.class_id == 0]
    per_class = {"wheel": float(np.median(wheels)) if len(wheels) else 0.0, "car": 1.0}  # half the wheels
    found = detector.detect(features, CARS, options_for(detector).updated(class_box_thresholds=per_class))[0]
    keep = everything.confidence > np.array([per_class["wheel"], 1.0])[everything.class_id]
    assert 0 < keep.sum() < len(everything)
    assert_same(found, everything[keep])


def test_cpu_defaults_keep_results(detector, load_detector, request, detector_images):
    from grounded.config import Acceleration
    from grounded.models.acceleration import apply_acceleration

    fast = load_detector(request.getfixturevalue(request.node.callspec.params["detector"]))
    apply_acceleration(Acceleration(), fast)  # what Predictor does on a CPU with no speed options
    options = options_for(detector)
    assert_same(fast.detect(fast.encode(detector_images), CARS, options)[1],
                detector.detect(detector.encode(detector_images), CARS, options)[1])


def test_refused_options_say_why(detector):
    from grounded.config import option_names

    assert set(detector.refused_options) <= option_names(SegmentOptions)
    assert all(isinstance(why, str) and why for why in detector.refused_options.values())
