"""Settings declared once: every flag of every command reaches the object it configures (table-driven).

Each command is run through ``grounded.cli.main`` with every flag set to a non-default value; the object the
flags configure (the teacher Predictor, ``train_run`` / ``distill``'s StudentConfig and TrainConfig,
``grounded.label``'s LabelConfig) is replaced by a recorder that keeps what it got and stops the command there.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from grounded.cli import main
from grounded.cli.common import NOT_ON_THE_COMMAND_LINE, TEACHER, teacher_kwargs
from grounded.cli.label import LABEL
from grounded.cli.train import STUDENT, TRAINING
from grounded.config import ModelConfig, SegmentOptions
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.label.runner import LabelConfig

# field -> (argv, the value the Predictor must receive); every value differs from the field's default
FLAGS = {
    "detector": (["--detector", "DET"], "DET"),
    "segmenter": (["--segmenter", "SEG"], "SEG"),
    "model": (["--model", "facebook/sam3"], "facebook/sam3"),
    "device": (["--device", "cpu"], "cpu"),
    "dtype": (["--dtype", "bfloat16"], "bfloat16"),
    "local_files_only": (["--offline"], True),
    "preset": (["--preset", "fast"], "fast"),
    "autocast": (["--autocast", "float16"], "float16"),
    "quantize": (["--quantize", "int8"], "int8"),
    "detector_size": (["--detector-size", "640"], 640),
    "threads": (["--threads", "3"], 3),
    "retain_memory": (["--no-retain-memory"], False),
    "cpu_kernels": (["--no-cpu-kernels"], False),
    "compile": (["--compile"], True),
    "box_threshold": (["--box-threshold", "0.3"], 0.3),
    "text_threshold": (["--text-threshold", "0.2"], 0.2),
    "nms": (["--nms", "agnostic"], "agnostic"),
    "nms_on": (["--nms-on", "mask"], "mask"),
    "nms_iou": (["--nms-iou", "0.7"], 0.7),
    "multimask": (["--multimask"], True),
    "max_detections": (["--max-detections", "7"], 7),
    "mask_threshold": (["--mask-threshold", "0.5"], 0.5),
    "sam_box_batch": (["--sam-box-batch", "8"], 8),
    "adapter": (["--adapter", "ADAPTER"], "ADAPTER"),
    "clip": (["--clip", "CLIP"], "CLIP"),
    "text_tokens": (["--text-tokens"], True),
    "verify": (["--verify", "clip"], "clip"),
}
CLIP_FIELDS = {"adapter", "clip", "text_tokens", "verify"}


class Stop(Exception):
    pass


@pytest.fixture
def recorded(monkeypatch):
    """Replace grounded.pipeline.predictor.Predictor by a recorder; returns the list of kwargs it got."""
    import grounded.pipeline.predictor as module

    calls = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            assert not args, "the CLI passes the teacher by keyword only"
            calls.append(kwargs)
            raise Stop

    monkeypatch.setattr(module, "Predictor", Recorder)
    return calls


def test_every_field_has_a_flag_or_a_reason():
    every = {f.name for cls in (ModelConfig, SegmentOptions) for f in fields(cls)}
    assert set(FLAGS) | set(NOT_ON_THE_COMMAND_LINE) == every
    assert not set(FLAGS) & set(NOT_ON_THE_COMMAND_LINE)


def _command(name, tmp_path):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
    return {
        "segment": ["segment", str(images / "a.png"), "a wheel", "--out", str(tmp_path / "o")],
        "label": ["label", str(images), "--classes", "car", "--out", str(tmp_path / "o")],
        "distill": ["distill", str(images), "--classes", "car", "--out", str(tmp_path / "o")],
        "train-adapter": ["train-adapter", str(images), "--classes", "car", "--out", str(tmp_path / "o")],
    }[name]


@pytest.mark.parametrize("command, teacher_fields", [
    ("segment", set(FLAGS)), ("label", set(FLAGS)), ("distill", set(FLAGS)),
    ("train-adapter", set(FLAGS) - CLIP_FIELDS),  # its --clip is the adapter's CLIP, not the teacher's
])
@pytest.mark.parametrize("models", [("detector", "segmenter"), ("model",)])
def test_every_flag_reaches_the_predictor(command, teacher_fields, models, recorded, tmp_path):
    chosen = {k: v for k, v in FLAGS.items() if k in teacher_fields and k not in {"detector", "segmenter", "model"}}
    chosen.update({k: FLAGS[k] for k in models})
    argv = [*_command(command, tmp_path), *(token for flag, _ in chosen.values() for token in flag)]
    with pytest.raises(Stop):
        main(argv)
    (kwargs,) = recorded
    expected = {k: v for k, (_, v) in chosen.items()}
    assert {k: kwargs[k] for k in expected} == expected  # every flag given arrives with its value
    assert set(kwargs) == teacher_fields  # and nothing else is added or dropped
    assert all(kwargs[k] is None for k in {"detector", "segmenter", "model"} - set(models))
    json.dumps(kwargs)  # JSON-able: the labelling engine ships them to workers


@pytest.mark.parametrize("flag, value", [(["--text-only"], "only"), (["--text-tokens"], True), ([], False)])
def test_text_flags_set_one_field(flag, value):
    import argparse

    from grounded.cli.common import add_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert teacher_kwargs(parser.parse_args(flag))["text_tokens"] == value
    with pytest.raises(SystemExit):
        parser.parse_args(["--text-only", "--text-tokens"])


def test_defaults_build_the_default_teacher():
    """No flags: the kwargs equal the dataclasses' defaults (so the Predictor's own defaults apply)."""
    import argparse

    from grounded.cli.common import add_model_arguments

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    kwargs = teacher_kwargs(parser.parse_args([]))
    defaults = {f.name: f.default for cls in (ModelConfig, SegmentOptions) for f in fields(cls) if f.name in kwargs}
    assert kwargs == defaults


def test_python_segment_takes_adapter_and_clip(monkeypatch):
    import grounded
    from grounded.pipeline import api

    calls = []

    class Recorder:
        def __init__(self, *args, **kwargs):
            calls.append(kwargs)
            raise Stop

    monkeypatch.setattr(api, "Predictor", Recorder)
    monkeypatch.setattr(api, "_cached", None)
    with pytest.raises(Stop):
        grounded.segment(np.zeros((8, 8, 3), np.uint8), "a wheel", adapter="ADAPTER", clip="CLIP", preset="fast",
                         verify="clip")
    assert (calls[0]["adapter"], calls[0]["clip"], calls[0]["preset"]) == ("ADAPTER", "CLIP", "fast")


# --- the student's and the labelling run's flags --------------------------------------------------------------
# field -> (argv, the value the config must hold); every value differs from the field's default
STUDENT_FLAGS = {
    "arch": (["--arch", "unet"], "unet"),
    "size": (["--size", "tiny"], "tiny"),
    "pretrained": (["--pretrained", "PRE"], "PRE"),
    "boundary_head": (["--no-boundary-head"], False),
    "tta_flip": (["--tta-flip"], True),
}
TRAINING_FLAGS = {
    "budget_minutes": (["--budget", "90s"], 1.5),
    "epochs": (["--epochs", "3"], 3),
    "batch_size": (["--batch-size", "5"], 5),
    "image_size": (["--image-size", "96"], 96),
    "lr": (["--lr", "0.05"], 0.05),
    "focal_weight": (["--focal", "0.5"], 0.5),
    "soft_weight": (["--soft-weight", "0.5"], 0.5),
    "val_fraction": (["--val-fraction", "0.3"], 0.3),
    "test_fraction": (["--test-fraction", "0.1"], 0.1),
    "folds": (["--folds", "3"], 3),
    "ema": (["--ema"], True),
    "ema_decay": (["--ema-decay", "0.99"], 0.99),
    "seed": (["--seed", "7"], 7),
    "max_minutes": (["--max-minutes", "2"], None),  # the older name of --budget: TrainConfig moves it there
    "max_steps": (["--max-steps", "11"], 11),
    "device": (["--device", "cpu"], "cpu"),
    "amp": (["--amp", "bf16"], "bf16"),
}
LABEL_FLAGS = {
    "formats": (["--format", "voc", "masks,yolo-seg"], ("voc", "masks", "yolo-seg")),
    "split": (["--split", "0.7,0.2,0.1"], "0.7,0.2,0.1"),
    "seed": (["--seed", "3"], 3),
    "force": (["--force"], True),
    "preview": (["--preview", "0"], 0),
    "copy_images": (["--copy-images"], True),
    "retry_errors": (["--retry-errors"], True),
    "progress": (["--no-progress"], False),
    "batch_size": (["--batch-size", "4"], 4),
    "soft_masks": (["--soft-masks"], True),
    "engine": (["--engine", "ray"], "ray"),
    "ray_address": (["--ray-address", "auto"], "auto"),
    "workers": (["--workers", "3"], 3),
    "gpus_per_worker": (["--gpus-per-worker", "0.5"], 0.5),
    "cpus_per_worker": (["--cpus-per-worker", "2"], 2.0),
}


@pytest.mark.parametrize("flags, table", [(TEACHER, FLAGS), (STUDENT, STUDENT_FLAGS), (TRAINING, TRAINING_FLAGS),
                                          (LABEL, LABEL_FLAGS)], ids=lambda x: getattr(x, "key", ""))
def test_every_setting_has_a_flag_or_a_reason(flags, table):
    every = {f.name for cls in flags.classes for f in fields(cls)}
    assert set(flags.specs()) | set(flags.omitted) == every and not set(flags.specs()) & set(flags.omitted)
    assert set(table) == set(flags.specs())  # and each flag is exercised below


@pytest.mark.parametrize("command", ["segment", "label", "train", "distill", "train-adapter"])
def test_no_two_flags_write_one_field(command):
    from grounded.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    dests = [a.dest for a in sub._actions if a.option_strings and a.dest != "help"]
    assert {d for d in dests if dests.count(d) > 1} <= {"text_tokens"}  # --text-tokens / --text-only


@pytest.fixture
def trainer(monkeypatch):
    """grounded train / distill stop where they would train: returns the (StudentConfig, TrainConfig, kwargs)."""
    import grounded.distill.data
    import grounded.distill.workflow

    calls = []

    def record_train(dataset, out, student, config, **kwargs):
        calls.append((student, config, kwargs))
        raise Stop

    def record_distill(images, ontology, out, student, config, **kwargs):
        calls.append((student, config, kwargs))
        raise Stop

    monkeypatch.setattr(grounded.distill.data, "open_dataset", lambda *args, **kwargs: None)
    monkeypatch.setattr(grounded.distill.workflow, "train_run", record_train)
    monkeypatch.setattr(grounded.distill.workflow, "distill", record_distill)
    return calls


def _expected(cls, given):
    return {**cls().to_dict(), **given}


@pytest.mark.parametrize("command", ["train", "distill"])
def test_every_student_and_training_flag_reaches_its_config(command, trainer, tmp_path):
    argv = {"train": ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--no-resume"],
            "distill": ["distill", str(tmp_path), "--classes", "car", "--out", str(tmp_path / "run")]}[command]
    chosen = {**STUDENT_FLAGS, **TRAINING_FLAGS}
    with pytest.raises(Stop):
        main([*argv, *(token for flag, _ in chosen.values() for token in flag)])
    ((student, config, kwargs),) = trainer
    assert student.to_dict() == _expected(StudentConfig, {k: v for k, (_, v) in STUDENT_FLAGS.items()})
    # --budget beats its older name --max-minutes; alone, --max-minutes is the budget (below)
    assert config.to_dict() == _expected(TrainConfig, {k: v for k, (_, v) in TRAINING_FLAGS.items()})
    if command == "train":
        assert kwargs["resume"] is False  # --no-resume reaches train_run
    else:
        assert kwargs["device"] == "cpu"  # distill's one --device: the teacher's and the student's


@pytest.mark.parametrize("command", ["train", "distill"])
def test_no_student_flags_give_the_configs_defaults(command, trainer, tmp_path):
    from grounded.distill.workflow import default_lr

    argv = {"train": ["train", str(tmp_path), "--out", str(tmp_path / "run")],
            "distill": ["distill", str(tmp_path), "--classes", "car", "--out", str(tmp_path / "run")]}[command]
    with pytest.raises(Stop):
        main(argv)
    ((student, config, _),) = trainer
    assert student == StudentConfig()
    assert config == TrainConfig(lr=default_lr(student))  # the learning rate, unless given, suits the arch


@pytest.mark.parametrize("argv, field, value", [
    (["--max-minutes", "2"], "budget_minutes", 2.0),  # the hidden older name of --budget
    (["--arch", "segformer"], "size", "b0"),  # an unset --size is the arch's
    (["--arch", "mobilevit"], "size", "1.0"),
    (["--arch", "unet"], "lr", 1e-3),  # an unset --lr is the arch's
])
def test_flags_whose_default_follows_another(argv, field, value, trainer, tmp_path):
    with pytest.raises(Stop):
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), *argv])
    ((student, config, _),) = trainer
    assert getattr(student if hasattr(student, field) else config, field) == value


@pytest.fixture
def labeller(monkeypatch):
    """grounded label stops where it would label: returns the (LabelConfig, other keywords) label() got."""
    import grounded.label

    calls = []

    def record(images, ontology, out, *, config, **kwargs):
        calls.append((config, kwargs))
        raise Stop

    monkeypatch.setattr(grounded.label, "label", record)
    return calls


def test_every_label_flag_reaches_the_label_config(labeller, tmp_path):
    argv = _command("label", tmp_path)
    with pytest.raises(Stop):
        main([*argv, *(token for flag, _ in LABEL_FLAGS.values() for token in flag)])
    ((config, kwargs),) = labeller
    assert {f.name: getattr(config, f.name) for f in fields(config)} == {
        **{f.name: getattr(LabelConfig(), f.name) for f in fields(LabelConfig)},
        **{k: v for k, (_, v) in LABEL_FLAGS.items()}}
    assert set(kwargs) == set(FLAGS)  # the rest is the teacher's (above)


def test_no_label_flags_give_the_label_config_defaults(labeller, tmp_path):
    with pytest.raises(Stop):
        main(_command("label", tmp_path))
    ((config, _),) = labeller
    assert config == LabelConfig()


def test_python_label_keeps_its_keywords(tmp_path):
    """grounded.label(..., formats=..., batch_size=...) still works: run settings go to LabelConfig, the rest to
    the default predictor (a given predictor refuses them), bad settings are refused before any work."""
    import grounded
    from grounded.errors import InputError
    from grounded.testing.fake import FakePredictor

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
    summary = grounded.label(images, "car", tmp_path / "o", predictor=FakePredictor(), formats=["coco"],
                             preview=0, progress=False, config=LabelConfig(batch_size=2, formats=("voc",)))
    assert set(summary.exports) == {"coco"} and summary.extra["batch_size"] == 2  # keywords beat config
    with pytest.raises(InputError, match="default predictor only"):
        grounded.label(images, "car", tmp_path / "p", predictor=FakePredictor(), box_threshold=0.5, progress=False)
    for bad in ({"engine": "spark"}, {"batch_size": 0}, {"formats": ["png"]}, {"split": "0.5,0.2"}):
        with pytest.raises(InputError):
            grounded.label(images, "car", tmp_path / "q", predictor=FakePredictor(), **bad)
    assert not (tmp_path / "q").exists()


def test_one_device_vocabulary():
    """None and "auto" mean the same for teachers and students: CUDA when available, else the CPU."""
    import torch

    from grounded.distill.predictor import StudentPredictor
    from grounded.distill.students import build_student
    from grounded.errors import InputError
    from grounded.models.loading import resolve_device

    here = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == here and resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda:1")
    student = build_student(StudentConfig(size="tiny", class_names=["a"]))
    for device in (None, "auto"):
        predictor = StudentPredictor.from_module(student, 32, device=device)
        assert predictor.predict(np.zeros((16, 16, 3), np.uint8)) is not None
        assert next(student.parameters()).device.type == here.type
