"""grounded.label with the fake predictor: streaming records, negatives, errors, resume, refusal, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import supervision as sv

from grounded.errors import InputError
from grounded.formats.coco import CocoDataset
from grounded.label import export_run, label
from grounded.label.splits import assign_splits, parse_split
from grounded.ontology import Ontology
from grounded.testing.fake import FakePredictor

CLASSES = "car, wheel, dog"
ALL = ["coco", "yolo", "yolo-seg", "voc", "masks"]


class Interrupting(FakePredictor):
    """Raises KeyboardInterrupt (as Ctrl-C would) when asked for its ``stop_at``-th image."""

    def __init__(self, stop_at: int):
        super().__init__()
        self.calls, self.stop_at = 0, stop_at

    def segment_batch(self, images, prompt, **options):
        self.calls += len(images)
        if self.calls >= self.stop_at:
            raise KeyboardInterrupt
        return super().segment_batch(images, prompt, **options)


def test_label_writes_dataset_with_negatives_and_errors(image_folder, tmp_path):
    out = tmp_path / "out"
    summary = label(image_folder, CLASSES, out, predictor=FakePredictor(), formats=ALL, progress=False, preview=4)
    assert summary.images == 17 and summary.labelled == 16 and summary.processed == 16
    assert [e["file"] for e in summary.errors] == ["broken.png"]
    assert "broken.png" in summary.errors[0]["reason"]
    assert json.loads((out / "errors.json").read_text())[0]["file"] == "broken.png"
    assert summary.empty > 0 and sum(summary.instances.values()) > 0
    assert sum(summary.splits.values()) == 16
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["images_root"] == str(image_folder.resolve()) and manifest["classes"] == ["car", "wheel", "dog"]
    assert (out / "preview.png").is_file() and (out / "summary.json").is_file()
    assert (out / "records" / "sub" / "deep" / "c.bmp.json").is_file()

    # COCO: every labelled image listed (negatives too), file_name relative to images_root, loads back
    from pycocotools.coco import COCO

    names = []
    for split in ("train", "val"):
        coco = COCO(str(out / "coco" / f"{split}.json"))
        names += [img["file_name"] for img in coco.dataset["images"]]
        assert all(a["iscrowd"] == 0 for a in coco.dataset["annotations"])
        ds = CocoDataset(out / "coco" / f"{split}.json", images_root=image_folder)
        for i in range(len(ds)):
            path, det = ds[i]
            record = json.loads((out / "records" / f"{ds.images[i]['file_name']}.json").read_text())
            assert len(det) == len(record["detections"])
            assert det.mask.sum(axis=(1, 2)).tolist() == [a for a in det.data["area"]]
    assert sorted(names) == sorted(r for r in summary_files(image_folder) if r != "broken.png")
    # the other formats load in supervision
    data = sv.DetectionDataset.from_yolo(str(out / "yolo" / "images" / "train"), str(out / "yolo" / "labels" / "train"),
                                         str(out / "yolo" / "data.yaml"))
    assert data.classes == ["car", "wheel", "dog"] and len(data) == summary.splits["train"]
    voc = sv.DetectionDataset.from_pascal_voc(str(out / "voc" / "JPEGImages"), str(out / "voc" / "Annotations"))
    assert len(voc) == 16
    assert len(list((out / "masks" / "annotations").rglob("*.png"))) == 16


def summary_files(root):
    from grounded.utils.images import find_images

    return [p.relative_to(root).as_posix() for p in find_images(root)]


def test_interrupted_run_resumes_to_identical_files(image_folder, tmp_path, tree_bytes):
    reference = tmp_path / "reference"
    label(image_folder, CLASSES, reference, predictor=FakePredictor(), formats=ALL, progress=False)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        label(image_folder, CLASSES, resumed, predictor=Interrupting(stop_at=7), formats=ALL, progress=False)
    assert len(list((resumed / "records").rglob("*.json"))) == 6 + 1  # 6 finished images + broken.png's error
    second = Interrupting(stop_at=10**6)
    summary = label(image_folder, CLASSES, resumed, predictor=second, formats=ALL, progress=False)
    assert summary.resumed == 6 and second.calls == 16 - 6
    assert tree_bytes(resumed) == tree_bytes(reference)


def test_changed_ontology_or_model_is_refused_unless_forced(image_folder, tmp_path, tree_bytes):
    out = tmp_path / "out"
    label(image_folder, CLASSES, out, predictor=FakePredictor(), progress=False, preview=0)
    before = tree_bytes(out)
    with pytest.raises(InputError, match="ontology was classes"):
        label(image_folder, "car, wheel", out, predictor=FakePredictor(), progress=False)
    with pytest.raises(InputError, match="model was"):
        label(image_folder, CLASSES, out, predictor=FakePredictor(box_threshold=0.5), progress=False)
    assert tree_bytes(out) == before  # nothing written is lost
    summary = label(image_folder, "car, wheel", out, predictor=FakePredictor(), progress=False, force=True, preview=0)
    assert summary.resumed == 0 and summary.processed == 16
    assert json.loads((out / "run.json").read_text())["classes"] == ["car", "wheel"]


def test_export_converts_without_models(image_folder, tmp_path):
    out = tmp_path / "out"
    label(image_folder, CLASSES, out, predictor=FakePredictor(), formats=["coco"], progress=False, preview=0)
    coco_before = (out / "coco" / "train.json").read_bytes()
    stats = export_run(out, ["voc", "masks"])
    assert stats.labelled == 16 and (out / "voc").is_dir() and (out / "masks" / "labels.txt").is_file()
    assert (out / "coco" / "train.json").read_bytes() == coco_before
    with pytest.raises(InputError, match="unknown export format"):
        export_run(out, ["parquet"])
    with pytest.raises(InputError, match="not a labelling run"):
        export_run(tmp_path, ["coco"])


def test_ontology_sources(image_folder, tmp_path):
    yaml_path = tmp_path / "o.yaml"
    yaml_path.write_text("classes:\n  - name: car\n    phrases: [car, automobile]\n  - wheel\n")
    summary = label(image_folder, yaml_path, tmp_path / "a", predictor=FakePredictor(), progress=False, preview=0)
    assert list(summary.instances) == ["car", "wheel"]
    ontology = Ontology.from_classes(["car", "wheel"])
    summary = label(image_folder, ontology, tmp_path / "b", predictor=FakePredictor(), progress=False, preview=0)
    assert list(summary.instances) == ["car", "wheel"]
    with pytest.raises(InputError, match="no images found"):
        label(tmp_path / "a" / "coco", CLASSES, tmp_path / "c", predictor=FakePredictor(), progress=False)


@pytest.mark.parametrize(
    "text, expected",
    [("0.8,0.2", {"train": 0.8, "val": 0.2}), ("0.7,0.2,0.1", {"train": 0.7, "val": 0.2, "test": 0.1}), ("1", {"train": 1.0}),
     ((0.9, 0.1), {"train": 0.9, "val": 0.1}), ("1,0", {"train": 1.0})],
)
def test_parse_split(text, expected):
    assert parse_split(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["0.8,0.3", "0.5,-0.5,1", "a,b", "0,1", "0.2,0.2,0.2,0.4"])
def test_parse_split_rejects(text):
    with pytest.raises(InputError):
        parse_split(text)


@pytest.mark.parametrize(
    "n, fractions, expected",
    [(10, {"train": 0.8, "val": 0.2}, {"train": 8, "val": 2}),
     (10, {"train": 0.7, "val": 0.2, "test": 0.1}, {"train": 7, "val": 2, "test": 1}),
     (3, {"train": 0.98, "val": 0.01, "test": 0.01}, {"train": 1, "val": 1, "test": 1}),
     (1, {"train": 0.8, "val": 0.2}, {"train": 1})],
)
def test_assign_splits_counts_and_determinism(n, fractions, expected):
    keys = [f"img{i}.jpg" for i in range(n)]
    split = assign_splits(keys, fractions, seed=3)
    counts = {name: list(split.values()).count(name) for name in expected}
    assert counts == expected
    assert assign_splits(list(reversed(keys)), fractions, seed=3) == split  # input order does not matter
    if n == 10:
        assert assign_splits(keys, fractions, seed=4) != split


def test_records_hold_rle_masks(image_folder, tmp_path):
    out = tmp_path / "out"
    label(image_folder, CLASSES, out, predictor=FakePredictor(), progress=False, preview=0, formats=["coco"])
    predictor = FakePredictor()
    predictor.set_image(image_folder / "img_00003.png")
    expected = predictor.segment(Ontology.from_classes(CLASSES))
    from grounded.label.records import record_to_detections

    record = json.loads((out / "records" / "img_00003.png.json").read_text())
    back = record_to_detections(record)
    assert np.array_equal(back.mask, expected.mask) and np.array_equal(back.class_id, expected.class_id)
    assert record["schema"] == 2 and all(isinstance(d["mask"]["counts"], str) for d in record["detections"])


def test_output_inside_the_image_folder_is_not_labelled(image_folder):
    out = image_folder / "labelled"
    first = label(image_folder, CLASSES, out, predictor=FakePredictor(), formats=ALL, progress=False)
    again = label(image_folder, CLASSES, out, predictor=FakePredictor(), formats=ALL, progress=False)
    assert first.images == again.images == 17 and again.resumed == 16 and again.processed == 0


def test_a_second_writer_is_refused_while_a_run_holds_the_folder(image_folder, tmp_path):
    from grounded.label.manifest import run_lock

    out = tmp_path / "out"
    label(image_folder, CLASSES, out, predictor=FakePredictor(), progress=False, preview=0)
    with run_lock(out):  # as if another process were labelling into out
        with pytest.raises(InputError, match="being written by another"):
            label(image_folder, CLASSES, out, predictor=FakePredictor(), progress=False)
        with pytest.raises(InputError, match="being written by another"):
            export_run(out, ["voc"])
    assert export_run(out, ["voc"]).labelled == 16  # free again


def test_label_with_tiny_models_end_to_end(tmp_path):
    """The real Predictor (tiny random Grounding DINO + SAM from folders) through grounded.label."""
    import grounded.label
    from grounded.testing.fake import make_images
    from grounded.testing.tiny import build_tiny_models

    detector, segmenter = build_tiny_models(tmp_path / "models")
    images = tmp_path / "images"
    make_images(images, 3, size=(96, 128))
    out = tmp_path / "out"
    summary = grounded.label(images, "car, wheel", out, detector=str(detector), segmenter=str(segmenter),
                             local_files_only=True, box_threshold=0.0, text_threshold=0.0, progress=False, preview=2)
    assert summary.labelled == 3 and summary.errors == []
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["model"]["detector"] == str(detector)
    from pycocotools.coco import COCO

    coco = COCO(str(out / "coco" / "train.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "wheel"]
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in coco.dataset["annotations"])


@pytest.mark.parametrize("first", ["from grounded import label", "import grounded; grounded.label",
                                   "import grounded.label.records"])
def test_grounded_label_is_callable_and_keeps_its_submodules_whatever_comes_first(first):
    """``grounded.label`` names the callable package in every import order (a cached function would hide
    ``grounded.label.records`` from a later ``import grounded.label.records as records``)."""
    import subprocess
    import sys

    code = (f"{first}\nimport grounded\nimport grounded.label.records as records\nfrom grounded import label\n"
            "assert callable(grounded.label) and label is grounded.label and records.read_record")
    subprocess.run([sys.executable, "-c", code], check=True)
