"""Speed options: presets, detection of native bf16, plumbing into the predictor, agreement with float32.

Tiny random models only; nothing here measures time (benchmarks/pipeline.py does).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch

from grounded.cli.common import add_model_arguments, predictor_from_args
from grounded.errors import InputError
from grounded.models import acceleration as acc
from grounded.models.acceleration import Acceleration, autocast_dtype, resolve_acceleration
from grounded.ontology import Ontology
from grounded.pipeline.predictor import Predictor

PROMPT = ["car", "wheel", "dog"]
LOOSE = {"box_threshold": 0.0, "text_threshold": 0.0, "max_detections": 5}  # random weights: keep some boxes


@pytest.fixture(scope="module")
def folders(tiny_model_dirs):
    return tiny_model_dirs  # tests/conftest.py


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (96, 160, 3), dtype=np.uint8)


def _run(folders, image, **model_options):
    predictor = Predictor(*map(str, folders), device="cpu", **model_options, **LOOSE)
    predictor.set_image(image)
    return predictor, predictor.segment(PROMPT)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_presets_and_overrides():
    assert resolve_acceleration().settings == Acceleration() and not resolve_acceleration().from_preset
    assert resolve_acceleration("accurate").settings == Acceleration()
    fast = resolve_acceleration("fast")
    assert fast.settings == Acceleration(autocast="auto", detector_size=512)
    assert fast.from_preset == {"autocast", "detector_size"}  # what a backend may skip
    explicit = resolve_acceleration("fast", detector_size=640, quantize="int8")
    assert (explicit.detector_size, explicit.quantize, explicit.from_preset) == (640, "int8", {"autocast"})
    assert fast.result_settings() == Acceleration(autocast="auto", detector_size=512)  # the identity's: plain
    with pytest.raises(InputError, match="preset"):
        resolve_acceleration("turbo")
    with pytest.raises(InputError, match="autocast"):
        Acceleration(autocast="int4")
    with pytest.raises(InputError, match="detector_size"):
        Acceleration(detector_size=0)


def test_auto_autocast_follows_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype(None, cpu) is None
    monkeypatch.setattr(acc, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert autocast_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(acc, "cpu_flags", lambda: {"avx2", "fma"})
    assert autocast_dtype("auto", cpu) is None  # emulated bf16 is slower than float32: not chosen
    assert autocast_dtype("bfloat16", cpu) == torch.bfloat16  # explicit request is honoured


def test_defaults_unchanged(folders, image):
    predictor, found = _run(folders, image)
    assert predictor.acceleration.settings == Acceleration()
    assert predictor.detector.autocast is None and predictor.segmenter.autocast is None
    assert "acceleration" not in predictor.describe()
    assert isinstance(predictor.detector.model.model.text_backbone.encoder.layer[0].output.dense, torch.nn.Linear)
    _, again = _run(folders, image, preset="accurate")
    np.testing.assert_array_equal(found.xyxy, again.xyxy)
    np.testing.assert_array_equal(found.mask, again.mask)


def _raw_outputs(predictor, image):
    """Detector (probs, boxes) for every query and SAM mask logits for one fixed box: no thresholds involved."""
    encoding = predictor.encode([image])
    caption = predictor.detector.captions_for(Ontology.from_prompt(PROMPT))[0]
    probs, boxes = predictor.detector.score_captions(encoding.detector, [caption.input_ids], [0])
    logits, _ = predictor.segmenter.decode(encoding.segmenter, 0, np.array([[10.0, 10.0, 120.0, 80.0]]), False)
    return probs, boxes, logits


@pytest.mark.parametrize("options", [{"autocast": "bfloat16"}, {"quantize": "int8"}])
def test_reduced_precision_agrees_with_float32(folders, image, options, bert_vocab_file):
    if "quantize" in options and bert_vocab_file is None:  # int8 of the filler-vocabulary model disagrees by chance
        pytest.skip("the int8 bounds hold for the tiny model built on BERT's real vocabulary (../shared/data)")
    ref_probs, ref_boxes, ref_logits = _raw_outputs(_run(folders, image)[0], image)
    predictor, found = _run(folders, image, **options)
    assert predictor.describe()["acceleration"]["autocast" if "autocast" in options else "quantize"]
    assert found.xyxy.dtype == np.float32 and found.mask.dtype == bool and found.mask.shape[1:] == image.shape[:2]
    probs, boxes, logits = _raw_outputs(predictor, image)
    assert probs.dtype == boxes.dtype == logits.dtype == torch.float32
    # Grounding DINO picks its queries by a top-k over encoder scores, so a small numeric change may reorder
    # them: match each float32 query to the nearest box. Tiny random models are far more sensitive than the
    # full-size ones (whose agreement benchmarks/pipeline.py reports), hence the loose bounds.
    dist = (boxes[0][:, None, :] - ref_boxes[0][None, :, :]).abs().amax(-1)  # (Q got, Q ref)
    assert (dist.min(0).values < 0.02).float().mean() >= 0.8
    matched = (probs[0][dist.argmin(0)] - ref_probs[0]).abs().amax(-1)
    assert matched.median() < 0.1
    a, b = logits > 0, ref_logits > 0
    assert (a & b).sum() / (a | b).sum().clamp(min=1) > 0.6  # mask IoU


def test_int8_replaces_linear_layers(folders, image):
    predictor, _ = _run(folders, image, quantize="int8")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    for model in (predictor.detector.model, predictor.segmenter.model):
        kinds = {type(m) for m in model.modules()}
        assert torch.nn.Linear not in kinds and DynamicQuantizedLinear in kinds


def test_detector_size_sets_the_input(folders, image):
    predictor, _ = _run(folders, image, detector_size=64)
    pixels, _ = predictor.detector.preprocess([image])
    assert min(pixels.shape[-2:]) == 64


def test_threads_option_sets_torch_threads(folders, image):
    before = torch.get_num_threads()
    try:
        _run(folders, image, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cli_flags_reach_the_predictor():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--preset", "fast", "--quantize", "int8", "--detector-size", "640"])
    assert (args.preset, args.quantize, args.detector_size, args.autocast, args.threads) == ("fast", "int8", 640, None, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--autocast", "int4"])


@pytest.mark.parametrize("flags, expected", [
    ([], Acceleration()),
    (["--no-retain-memory", "--no-cpu-kernels"], Acceleration(retain_memory=False, cpu_kernels=False)),
    (["--preset", "fast", "--detector-size", "640", "--threads", "2"],
     replace(acc.PRESETS["fast"], detector_size=640, threads=2)),
])
def test_cli_speed_flags_build_the_predictors_settings(folders, flags, expected):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    before = torch.get_num_threads()
    try:
        predictor = predictor_from_args(parser.parse_args(["--detector", str(folders[0]), "--segmenter",
                                                           str(folders[1]), *flags]))
    finally:
        torch.set_num_threads(before)
    assert predictor.acceleration.settings == expected


def test_help_says_what_each_preset_does_for_each_backend():
    from grounded.cli.common import preset_help
    from grounded.config import PRESETS, RESIZABLE_INPUT
    from grounded.models.registry import BACKENDS, backend_class, image_role

    text = preset_help()
    assert "accurate: float32" in text and "fast: autocast=auto on every backend" in text
    assert f"detector_size={PRESETS['fast'].detector_size} on grounding-dino and mm-grounding-dino only" in text
    resizable = {t for t in BACKENDS if hasattr(backend_class(t, image_role(t)), "set_input_size")}
    assert resizable == set(RESIZABLE_INPUT)  # the help's list is the backends that take detector_size


def test_int8_with_the_fast_preset_runs_without_autocast(folders, image, monkeypatch):
    """preset fast asks autocast="auto": with int8 (float32 activations) it resolves to none, on any CPU."""
    monkeypatch.setattr(acc, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})  # where "auto" would pick bf16
    predictor, found = _run(folders, image, preset="fast", quantize="int8")
    assert predictor.detector.autocast is None and predictor.segmenter.autocast is None
    assert found.mask.shape[1:] == image.shape[:2]
    with pytest.raises(InputError, match="cannot run under autocast='bfloat16'"):
        _run(folders, image, autocast="bfloat16", quantize="int8")
