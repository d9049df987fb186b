"""Command line: train -> evaluate -> predict (torch and ONNX), distill end to end, and clear input errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from grounded.cli import main
from grounded.testing.fake import FAKE_FLAGS

FAST = ["--size", "tiny", "--epochs", "2", "--image-size", "64", "--batch-size", "4"]


@pytest.fixture(scope="module")
def trained(coco_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(coco_dataset), "--out", str(run), *FAST]) == 0
    return run


def test_train_writes_a_deployable_run(trained):
    for name in ("student.safetensors", "student.json", "student.onnx", "summary.json", "training_curve.png"):
        assert (trained / name).is_file(), name


def test_evaluate_writes_metrics_for_the_run_and_its_onnx(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--pairs", "2"]) == 0
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 3 and set(metrics["per_class_iou"]) == {"disc", "square"}
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["mask_ap"] <= 1.0
    assert len(list((trained / "eval" / "pairs").glob("*.png"))) == 2
    assert "mIoU" in capsys.readouterr().out
    assert main(["evaluate", str(trained / "student.onnx"), "--out", str(tmp_path)]) == 0
    onnx_metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert onnx_metrics["miou"] == pytest.approx(metrics["miou"], abs=0.02)


@pytest.mark.parametrize("model", ["student.onnx", "student.safetensors", "."])
def test_predict_writes_png_and_json_like_segment(trained, coco_dataset, tmp_path, model):
    image = coco_dataset / "images" / "img000.png"
    assert main(["predict", "--model", str(trained / model), str(image), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "img000.json").read_text())
    assert (result["width"], result["height"]) == (48, 48)
    for det in result["detections"]:
        assert {"bbox_xyxy", "class_id", "class_name", "confidence", "mask", "area"} <= set(det)
    assert Image.open(tmp_path / "img000.png").size == (48, 48)


def test_evaluate_scores_all_of_an_external_dataset_unless_a_split_is_asked(trained, label_run, tmp_path):
    external = label_run / "masks"  # another dataset: 12 train + 4 val images
    assert main(["evaluate", str(trained), "--data", str(external), "--out", str(tmp_path / "all")]) == 0
    every = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert every["images"] == 16 and every["split"] == "all"
    assert main(["evaluate", str(trained), "--data", str(external), "--split", "val", "--out", str(tmp_path / "val")]) == 0
    assert json.loads((tmp_path / "val" / "metrics.json").read_text())["images"] == 4
    assert "mask_ap_components" in every and every["instances"] == "boundary"  # instance AP both ways


def test_train_prints_parameters_and_gflops(coco_dataset, tmp_path, capsys):
    assert main(["train", str(coco_dataset), "--out", str(tmp_path), "--max-steps", "3", "--image-size", "64",
                 "--batch-size", "4", "--no-export"]) == 0
    out = capsys.readouterr().out
    assert "M parameters" in out and "GFLOPs per 64 px image" in out and "trained 3 steps (planned 3)" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == summary["planned_steps"] == 3 and summary["final_lr"] == pytest.approx(2e-5)  # decayed


def test_teacher_labels_equal_to_the_truth_score_perfectly(label_run, tmp_path):
    # a bare COCO file whose images live elsewhere is a one-line input error, not a crash
    assert main(["evaluate", str(label_run), "--data", str(label_run / "coco" / "train.json"), "--out", str(tmp_path)]) == 2
    assert main(["evaluate", str(label_run), "--data", str(label_run / "masks"), "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 16 and metrics["miou"] == pytest.approx(1.0) and metrics["mask_ap"] == pytest.approx(1.0)


def test_distill_labels_trains_evaluates_exports_then_reuses_labels(coco_dataset, tmp_path, monkeypatch):
    args = ["distill", str(coco_dataset / "images"), "--classes", "disc, square", "--out", str(tmp_path), *FAST,
            *FAKE_FLAGS]
    assert main(args) == 0
    first = json.loads((tmp_path / "distill.json").read_text())
    assert not first["labels_reused"] and (tmp_path / "labels" / "coco" / "train.json").is_file()
    assert (tmp_path / "student" / "student.onnx").is_file() and (tmp_path / "student" / "eval" / "metrics.json").is_file()
    assert main(args) == 0
    assert json.loads((tmp_path / "distill.json").read_text())["labels_reused"]


class FakeTeacher:
    """Stands in for grounded.Predictor: the fake's detections, and an identity made of the teacher flags, as
    Predictor.describe() records every option it is given."""

    def __init__(self, **options):
        from grounded.testing.fake import FakePredictor

        self.fake, self.options = FakePredictor(), options

    def describe(self):
        return {**self.fake.describe(), "options": self.options}

    def __getattr__(self, name):  # set_image, segment, segment_batch
        return getattr(self.fake, name)


@pytest.fixture
def fake_teacher(monkeypatch):
    """The teacher flags build a FakeTeacher; returns the `resume` value of each student training, in order."""
    import grounded.distill.workflow as workflow
    import grounded.pipeline.predictor as predictor

    monkeypatch.setattr(predictor, "Predictor", FakeTeacher)
    resumed, train = [], workflow.train

    def recording_train(*args, resume, **kwargs):
        resumed.append(resume)
        return train(*args, resume=resume, **kwargs)

    monkeypatch.setattr(workflow, "train", recording_train)
    return resumed


def test_distill_refuses_a_changed_teacher_naming_the_setting_or_relabels_with_force(coco_dataset, tmp_path,
                                                                                      fake_teacher, capsys):
    args = ["distill", str(coco_dataset / "images"), "--classes", "disc, square", "--out", str(tmp_path), *FAST]
    run_json = tmp_path / "labels" / "run.json"
    assert main(args) == 0
    first = run_json.read_text()
    assert main(args) == 0 and json.loads((tmp_path / "distill.json").read_text())["labels_reused"]
    capsys.readouterr()
    for flags, named in [(["--box-threshold", "0.5"], "teacher options.box_threshold: 0.35 -> 0.5"),
                         (["--detector", "other/detector"], 'teacher options.detector: null -> "other/detector"'),
                         (["--preset", "fast"], 'teacher options.preset: null -> "fast"')]:
        assert main([*args, *flags]) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and named in errors[0] and "--force" in errors[0], errors
    assert run_json.read_text() == first and fake_teacher == [True, True]  # refused before any labelling or training
    assert main([*args, "--box-threshold", "0.5", "--force"]) == 0
    result = json.loads((tmp_path / "distill.json").read_text())
    assert result["relabelled"] and not result["labels_reused"]
    assert json.loads(run_json.read_text())["model"]["options"]["box_threshold"] == 0.5
    assert fake_teacher == [True, True, False]  # new labels: the student starts over
    assert main([*args, "--box-threshold", "0.5", "--no-resume"]) == 0  # --no-resume reaches the student
    assert json.loads((tmp_path / "distill.json").read_text())["labels_reused"] and fake_teacher[-1] is False


def test_distill_reuses_labels_only_of_the_same_images_and_ontology(coco_dataset, tmp_path, fake_teacher, capsys):
    from grounded.distill.workflow import label_changes
    from grounded.ontology import Ontology

    args = ["distill", str(coco_dataset / "images"), "--classes", "disc, square", "--out", str(tmp_path), *FAST]
    assert main(args) == 0
    teacher = json.loads((tmp_path / "labels" / "run.json").read_text())["model"]
    labels, images = tmp_path / "labels", coco_dataset / "images"
    assert label_changes(labels, images, Ontology.from_classes("disc, square"), teacher) == []
    assert label_changes(tmp_path / "none", images, Ontology.from_classes("disc"), teacher) == []  # no labels yet
    changed = label_changes(labels, coco_dataset, Ontology.from_classes("disc"), {**teacher, "dtype": "bfloat16"})
    assert [c.split(":")[0] for c in changed] == ["images folder", "ontology", "teacher dtype"]
    assert main([*args[:3], "disc", *args[4:]]) == 2 and "ontology: classes" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{tmp}/nowhere", "--out", "{tmp}/run"],
        ["train", "{tmp}", "--out", "{tmp}/run"],  # an empty folder is no dataset
        ["train", "{tmp}", "--out", "{tmp}/run", "--arch", "backbone_unet"],  # needs --pretrained
        ["train", "{tmp}/nowhere", "--out", "{tmp}/run", "--budget", "soon"],  # not a duration
        ["evaluate", "{tmp}/nowhere"],
        ["predict", "--model", "{tmp}/missing.onnx", "{tmp}/missing.jpg"],
        ["distill", "{tmp}/nowhere", "--classes", "car", "--out", "{tmp}/run"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grounded: error:")
