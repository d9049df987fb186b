"""Ontology: prompt forms, synonyms -> one class id, validation errors (table-driven)."""

from __future__ import annotations

import pytest

from grounded.errors import InputError
from grounded.ontology import Ontology


@pytest.mark.parametrize(
    "prompt, names",
    [
        ("a wheel", ["a wheel"]),
        ("a wheel.", ["a wheel"]),
        ("car . wheel .", ["car", "wheel"]),
        ("Car . Wheel", ["car", "wheel"]),
        ("e.g. cars", ["e.g. cars"]),  # a period inside words is not a separator
        (["car", "headlight"], ["car", "headlight"]),
        (("dog",), ["dog"]),
    ],
)
def test_prompt_forms(prompt, names):
    assert Ontology.from_prompt(prompt).class_names == names


def test_synonyms_share_one_class_id():
    onto = Ontology.from_dict({"classes": [{"name": "wheel", "phrases": ["wheel", "tire", "Tyre"]}, "car"]})
    assert [onto.class_id(p) for p in ["wheel", "tire", "tyre", "car"]] == [0, 0, 0, 1]
    assert onto.phrases() == [("wheel", 0), ("tire", 0), ("tyre", 0), ("car", 1)]


def test_thresholds_resolve_class_then_defaults_then_caller():
    onto = Ontology.from_dict({"defaults": {"box_threshold": 0.3},
                               "classes": [{"name": "a", "box_threshold": 0.5, "text_threshold": 0.1}, "b"]})
    assert onto.box_threshold_for(0, 0.9) == 0.5 and onto.box_threshold_for(1, 0.9) == 0.3
    assert onto.text_threshold_for(0, 0.9) == 0.1 and onto.text_threshold_for(1, 0.9) == 0.9


@pytest.mark.parametrize(
    "data, message",
    [
        ({"classes": []}, "non-empty list"),
        ({"classes": ["a"], "colour": 1}, "unknown key"),
        ({"classes": [{"name": "a", "phrase": ["x"]}]}, "unknown key"),
        ({"classes": ["a", "a"]}, "duplicate class name"),
        ({"classes": [{"name": "a", "phrases": ["x"]}, {"name": "b", "phrases": ["X."]}]}, "claimed by classes"),
        ({"classes": [{"name": "a", "phrases": []}]}, "'phrases' is empty"),
        ({"classes": [{"name": "a", "box_threshold": 2}]}, r"in \[0, 1\]"),
        ({"classes": [{"name": "a", "clip_templates": ["a photo"]}]}, "clip_templates"),
        ({"classes": [{"name": ""}]}, "non-empty string"),
        (["a"], "expected a mapping"),
    ],
)
def test_invalid_ontologies(data, message):
    with pytest.raises(InputError, match=message):
        Ontology.from_dict(data)


@pytest.mark.parametrize("prompt", ["", "   ", [], ["", " "], 3])
def test_empty_or_bad_prompts(prompt):
    with pytest.raises(InputError):
        Ontology.from_prompt(prompt)


def test_yaml_round_trip_and_fingerprint(tmp_path):
    text = "name: t\nclasses:\n  - name: wheel\n    phrases: [wheel, tire]\n  - car\n"
    path = tmp_path / "o.yaml"
    path.write_text(text)
    onto = Ontology.from_yaml(path)
    assert Ontology.from_dict(onto.to_dict()) == onto
    assert onto.fingerprint() == Ontology.from_dict(onto.to_dict()).fingerprint()
    assert onto.fingerprint() != Ontology.from_classes("wheel, car").fingerprint()


def test_missing_and_broken_yaml(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Ontology.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [a, b\n")
    with pytest.raises(InputError, match="not valid YAML"):
        Ontology.from_yaml(bad)
