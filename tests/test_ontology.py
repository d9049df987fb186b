"""Ontology: prompt forms, synonyms -> one class id, validation errors (table-driven)."""

from __future__ import annotations

import pytest

from grounded.errors import QUOTE_LIMIT, InputError
from grounded.ontology import Ontology, split_caption


@pytest.mark.parametrize(
    "prompt, names",
    [
        ("a wheel", ["a wheel"]),
        ("a wheel.", ["a wheel"]),
        ("car . wheel .", ["car", "wheel"]),
        ("Car . Wheel", ["car", "wheel"]),
        ("e.g. cars", ["e.g. cars"]),  # a period inside words is not a separator
        ("2.5 ton truck . car .", ["2.5 ton truck", "car"]),  # a decimal point is not a separator
        ("st. bernard . car .", ["st. bernard", "car"]),  # nor an abbreviation's dot
        ("car . wheel.", ["car", "wheel"]),  # a dot ending the caption separates
        ("car .", ["car"]),
        ("  car  .  wheel  .  ", ["car", "wheel"]),
        ("car .wheel", ["car .wheel"]),  # a dot without space after it is not a separator
        ("dog, cat", ["dog, cat"]),  # a prompt string is one class even with commas (see from_classes)
        ("mr. t.", ["mr. t"]),
        (["car", "headlight"], ["car", "headlight"]),
        (("dog",), ["dog"]),
    ],
)
def test_prompt_forms(prompt, names):
    assert Ontology.from_prompt(prompt).class_names == names


@pytest.mark.parametrize(
    "names, expected",
    [
        ("car, wheel, dog", ["car", "wheel", "dog"]),
        ("2.5 ton truck, st. bernard", ["2.5 ton truck", "st. bernard"]),
        (["car", " wheel  rim "], ["car", "wheel rim"]),
        ("car,, ,wheel", ["car", "wheel"]),
    ],
)
def test_class_lists(names, expected):
    assert Ontology.from_classes(names).class_names == expected


@pytest.mark.parametrize(
    "caption, phrases",
    [
        ("2.5 ton truck . car .", ["2.5 ton truck", "car"]),
        ("st. bernard . car .", ["st. bernard", "car"]),
        ("a . b . c", ["a", "b", "c"]),
        ("one thing", ["one thing"]),
        ("v1.0 . x.", ["v1.0", "x"]),
        (" . . ", []),
    ],
)
def test_split_caption(caption, phrases):
    assert split_caption(caption) == phrases


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


# nine anchored lists, each holding the previous one nine times: 9 ** 9 (387 M) strings once expanded
ALIAS_BOMB = "[&a [x, x, x, x, x, x, x, x, x], " + ", ".join(
    f"&{chr(98 + k)} [{', '.join(['*' + chr(97 + k)] * 9)}]" for k in range(8)
) + "]"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"classes: [caf\xe9]\n", "not UTF-8 text"),  # Latin-1 bytes
        (b"\xff\xfe c\x00l\x00", "not UTF-8 text"),  # UTF-16
        (f"classes: {ALIAS_BOMB}\n".encode(), "expected a class name or a mapping"),
        (f"name: {ALIAS_BOMB}\nclasses: [a]\n".encode(), "'name' must be text"),
        (f"defaults: {ALIAS_BOMB}\nclasses: [a]\n".encode(), "'defaults' may hold only"),
        (f"classes: [{{name: a, box_threshold: {ALIAS_BOMB}}}]\n".encode(), "threshold must be"),
        (f"classes: [{{name: a, phrases: {ALIAS_BOMB}}}]\n".encode(), "'phrases' must be a list of strings"),
        (b"classes: [" + b"x" * 100_000 + b", {name: b, box_threshold: '" + b"y" * 100_000 + b"'}]\n", "threshold must be"),
        (b"classes: [a, b\n" + b"z" * 100_000, "not valid YAML"),
    ],
    ids=["latin-1", "utf-16", "bomb-classes", "bomb-name", "bomb-defaults", "bomb-threshold", "bomb-phrases",
         "long-value", "long-yaml"],
)
def test_bad_yaml_files_give_short_clear_errors(tmp_path, content, message):
    path = tmp_path / "o.yaml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        Ontology.from_yaml(path)
    assert str(path) in str(info.value)
    assert len(str(info.value)) < QUOTE_LIMIT + 300  # the file name, the reason and a short excerpt


def test_utf8_yaml_with_bom_and_accents(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_bytes("\ufeffclasses: [café, straße]\n".encode())
    assert Ontology.from_yaml(path).class_names == ["café", "straße"]
