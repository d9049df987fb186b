"""The shipped ontologies load, and ontology files are validated with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from grounded.errors import InputError
from grounded.formats.coco import CocoDataset
from grounded.ontology import Ontology

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.parametrize(
    "name, classes", [("coco", 80), ("car_parts", 18), ("driving", 11), ("retail_shelves", 10), ("animals", 12)]
)
def test_shipped_ontologies_load(name, classes):
    ontology = Ontology.from_yaml(REPO / "prompts" / f"{name}.yaml")
    assert len(ontology) == classes
    assert all(cls.phrases for cls in ontology.classes)


@pytest.mark.skipif(not (SHARED / "clip_text_embeddings" / "coco_names.txt").is_file(), reason="../shared absent")
def test_coco_ontology_has_cocos_names_in_cocos_order():
    expected = (SHARED / "clip_text_embeddings" / "coco_names.txt").read_text().split("\n")
    expected = [n.strip() for n in expected if n.strip()]
    assert Ontology.from_yaml(REPO / "prompts" / "coco.yaml").class_names == expected


@pytest.mark.skipif(not (SHARED / "car_parts" / "train" / "annotations.json").is_file(), reason="../shared absent")
def test_car_parts_ontology_matches_the_dataset_classes():
    dataset = CocoDataset(SHARED / "car_parts" / "train" / "annotations.json")
    assert Ontology.from_yaml(REPO / "prompts" / "car_parts.yaml").class_names == dataset.classes


@pytest.mark.parametrize(
    "text, message",
    [
        ("classes: [car]\ncolour: red\n", "unknown key"),
        ("classes:\n  - name: car\n    synonyms: [auto]\n", "unknown key"),
        ("classes: [car, car]\n", "duplicate class name"),
        ("classes:\n  - name: car\n    phrases: [car, vehicle]\n  - name: truck\n    phrases: [Vehicle.]\n", "claimed by"),
        ("classes:\n  - name: car\n    phrases: []\n", "empty"),
        ("classes: []\n", "non-empty list"),
        ("classes:\n  - name: car\n    box_threshold: 1.5\n", "threshold must be"),
        ("classes: [car\n", "not valid YAML"),
    ],
)
def test_ontology_file_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        Ontology.from_yaml(path)
