"""An ontology's thresholds follow the flags' rule: a backend that refuses ``text_threshold`` (OWLv2, OmDet-Turbo,
SAM 3) refuses an ontology that moves it off its default too, naming the class and the backend, before any
image is labelled; the backends that take it (Grounding DINO) apply it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from grounded import Predictor, label
from grounded.cli import main
from grounded.errors import InputError
from grounded.ontology import Ontology

OWN = Ontology.from_dict({"classes": [{"name": "wheel", "text_threshold": 0.3}, "car"]})
SHARED = Ontology.from_dict({"defaults": {"text_threshold": 0.3}, "classes": ["wheel", "car"]})
AT_DEFAULT = Ontology.from_dict({"defaults": {"box_threshold": 0.0, "text_threshold": 0.25},  # as prompts/*.yaml
                                 "classes": [{"name": "wheel", "box_threshold": 1.0}, "car"]})


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def owlv2(tiny_owlv2_dir, tiny_model_dirs):
    return Predictor(tiny_owlv2_dir, str(tiny_model_dirs[1]), box_threshold=0.0, max_detections=5)


def test_a_class_threshold_is_refused_as_the_flag_is(owlv2, image):
    encoding = owlv2.encode([image])
    with pytest.raises(InputError) as flag:
        owlv2.segment_encoded(encoding, ["wheel", "car"], text_threshold=0.3)
    with pytest.raises(InputError) as own:
        owlv2.segment_encoded(encoding, OWN)
    with pytest.raises(InputError, match=r"the ontology's defaults set text_threshold 0\.3: .*Owlv2Detector"):
        owlv2.segment_encoded(encoding, SHARED)
    assert "the ontology's class 'wheel' sets text_threshold 0.3: not supported by the detector" in str(own.value)
    reason = owlv2.detector.refused_options["text_threshold"]
    for error in (flag.value, own.value):  # one rule, one kind of message: the backend, its reason, the fix
        assert "(Owlv2Detector)" in str(error) and reason in str(error) and "choose another detector" in str(error)


def test_the_default_value_passes_and_box_thresholds_apply(owlv2, image):
    found = owlv2.segment_encoded(owlv2.encode([image]), AT_DEFAULT)[0]
    assert len(found) > 0 and set(found.data["class_name"]) == {"car"}  # wheel's box threshold 1.0 keeps none


def test_grounding_dino_applies_a_class_text_threshold(tiny_predictor, image):
    tiny_predictor.set_image(image)  # box 0.2, text 0.0 (tests/conftest.py)
    loose = tiny_predictor.segment(["wheel", "car"])
    strict = tiny_predictor.segment(Ontology.from_dict({"classes": [{"name": "wheel", "text_threshold": 1.0}, "car"]}))
    assert "wheel" in set(loose.data["class_name"]) and "wheel" not in set(strict.data["class_name"])


@pytest.mark.parametrize("backend", ["omdet-turbo", "sam3"])
def test_every_backend_refusing_text_threshold_refuses_it_in_the_ontology(backend, request, tiny_model_dirs):
    if backend == "sam3":
        predictor = Predictor(model=request.getfixturevalue("tiny_sam3_dir"))
    else:
        predictor = Predictor(request.getfixturevalue("tiny_omdet_turbo_dir"), str(tiny_model_dirs[1]))
    assert "text_threshold" in predictor.backends()[0][1].refused_options
    predictor.check_options(ontology=AT_DEFAULT)
    with pytest.raises(InputError, match=r"class 'wheel' sets text_threshold 0\.3"):
        predictor.check_options(ontology=OWN)


def test_label_refuses_before_writing_anything(owlv2, image, tmp_path):
    Image.fromarray(image).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="class 'wheel' sets text_threshold"):
        label(tmp_path, OWN, tmp_path / "out", predictor=owlv2, progress=False, preview=0)
    assert not (tmp_path / "out" / "run.json").exists()  # fixing the ontology needs no --force afterwards


def test_cli_segment_refuses_in_one_line(tiny_owlv2_dir, tiny_model_dirs, image, tmp_path, capsys):
    Image.fromarray(image).save(tmp_path / "a.png")
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(SHARED.to_dict()))
    code = main(["segment", str(tmp_path / "a.png"), "--ontology", str(tmp_path / "o.yaml"), "--out",
                 str(tmp_path / "out"), "--detector", tiny_owlv2_dir, "--segmenter", str(tiny_model_dirs[1])])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("grounded: error:")]
    assert code == 2 and len(errors) == 1 and "defaults set text_threshold 0.3" in errors[0]
    assert not (tmp_path / "out").exists()
