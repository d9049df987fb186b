"""Settings declared once: every teacher flag of every command reaches the Predictor it builds (table-driven).

Each command is run through ``grounded.cli.main`` with every teacher flag set to a non-default value; the
Predictor class is replaced by a recorder that keeps its keyword arguments and stops the command there.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from grounded.cli import main
from grounded.cli.common import NOT_ON_THE_COMMAND_LINE, teacher_kwargs
from grounded.config import ModelConfig, SegmentOptions

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
    monkeypatch.delenv("GROUNDED_FAKE_PREDICTOR", raising=False)
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
