"""Build apart from use: a Predictor over backends built once (grounded/pipeline/build.py).

One SAM segmenter is built once and serves two Predictors with two detectors: the same object, loaded once,
its weights not copied (the process's resident memory grows by far less than the weights), and each predictor
gives exactly what a predictor that loaded its own models gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grounded import Predictor, load_predictor
from grounded.config import ModelConfig
from grounded.errors import InputError
from grounded.models import registry
from grounded.pipeline import build
from grounded.pipeline.build import build_backends

CLASSES = ["car", "wheel"]
OPTIONS = {"box_threshold": 0.2, "text_threshold": 0.0}


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


@pytest.fixture(scope="module")
def second_detector(tmp_path_factory, tiny_model_dirs) -> Path:
    from grounded.testing.tiny import build_tiny_detector

    vocab = tiny_model_dirs[0] / "vocab.txt"
    return build_tiny_detector(tmp_path_factory.mktemp("detector_b"), vocab_file=vocab if vocab.is_file() else None,
                               seed=1)


@pytest.fixture(scope="module")
def large_sam(tmp_path_factory) -> Path:
    """A SAM with ~25 M parameters (100 MB float32): big enough that a second copy shows in the RSS."""
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor, SamVisionConfig

    folder = tmp_path_factory.mktemp("large_sam")
    vision = SamVisionConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, mlp_dim=2048,
                             output_channels=32, image_size=128, patch_size=16, window_size=4,
                             global_attn_indexes=[7], num_pos_feats=16)
    torch.manual_seed(0)
    model = SamModel(SamConfig(vision_config=vision)).eval()
    SamProcessor(image_processor=SamImageProcessorPil(size={"longest_edge": 128},
                                                      pad_size={"height": 128, "width": 128})).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def _count_loads(monkeypatch) -> list[str]:
    loads: list[str] = []
    original = registry.load_backend

    def counted(name, role, *args, **kwargs):
        loads.append(role)
        return original(name, role, *args, **kwargs)

    monkeypatch.setattr(registry, "load_backend", counted)
    return loads


def test_one_segmenter_two_predictors_two_detectors(tiny_model_dirs, second_detector, photo, monkeypatch):
    detector_a, segmenter_dir = tiny_model_dirs
    loads = _count_loads(monkeypatch)
    sam = build_backends(ModelConfig(segmenter=str(segmenter_dir)), roles=("segmenter",)).segmenter
    detectors = [build_backends(ModelConfig(detector=str(d)), roles=("detector",)).detector
                 for d in (detector_a, second_detector)]
    first, second = (Predictor(detector=d, segmenter=sam, **OPTIONS) for d in detectors)
    assert loads == ["segmenter", "detector", "detector"]  # the segmenter loaded once, by the builder
    assert first.segmenter is sam and second.segmenter is sam
    assert first.detector is detectors[0] and second.detector is detectors[1]

    # each gives what a predictor that loaded its own models gives, bit for bit
    for predictor, detector_dir in ((first, detector_a), (second, second_detector)):
        own = Predictor(str(detector_dir), str(segmenter_dir), **OPTIONS)
        predictor.set_image(photo)
        own.set_image(photo)
        got, want = predictor.segment(CLASSES), own.segment(CLASSES)
        assert len(want) > 0
        np.testing.assert_array_equal(got.xyxy, want.xyxy)
        np.testing.assert_array_equal(got.mask, want.mask)
        np.testing.assert_array_equal(got.data["mask_score"], want.data["mask_score"])
        assert predictor.describe() == own.describe()
    first.timer.reset()
    second.timer.reset()
    first_found = first.segment_batch([photo], CLASSES)[0]
    second_found = second.segment_batch([photo], CLASSES)[0]
    assert not np.array_equal(first_found.xyxy, second_found.xyxy)  # two detectors indeed
    for predictor in (first, second):  # the shared segmenter timed each predictor's own stages
        assert "sam.prompt_mask_decoder" in predictor.timer.seconds, predictor.timer.seconds


def test_shared_segmenter_is_not_copied_in_memory(tiny_model_dirs, large_sam):
    if not Path("/proc/self/statm").is_file():
        pytest.skip("resident memory is read from /proc (Linux)")
    detector_dir = tiny_model_dirs[0]
    sam = build_backends(ModelConfig(segmenter=str(large_sam)), roles=("segmenter",)).segmenter
    weights = sum(p.numel() * p.element_size() for p in sam.model.parameters())
    assert weights > 80e6
    detectors = [build_backends(ModelConfig(detector=str(detector_dir)), roles=("detector",)).detector
                 for _ in range(2)]
    before = _rss_bytes()
    predictors = [Predictor(detector=d, segmenter=sam) for d in detectors]
    grown = _rss_bytes() - before
    assert grown < weights / 4, f"RSS grew by {grown / 1e6:.0f} MB for {weights / 1e6:.0f} MB of shared weights"
    pointers = [{p.data_ptr() for p in pr.segmenter.model.parameters()} for pr in predictors]
    assert pointers[0] == pointers[1]


def test_names_and_load_predictor_build_the_same(tiny_model_dirs):
    detector_dir, segmenter_dir = (str(d) for d in tiny_model_dirs)
    by_name = Predictor(detector_dir, segmenter_dir, **OPTIONS)
    built = load_predictor(ModelConfig(detector=detector_dir, segmenter=segmenter_dir), **OPTIONS)
    pretrained = Predictor.from_pretrained(detector_dir, segmenter_dir, **OPTIONS)
    assert by_name.describe() == built.describe() == pretrained.describe()
    assert json.loads(json.dumps(by_name.describe()))["detector"] == detector_dir


def test_acceleration_is_the_builders_and_a_built_backend_keeps_its_own(tiny_model_dirs, monkeypatch):
    detector_dir, segmenter_dir = (str(d) for d in tiny_model_dirs)
    applied: list[int] = []
    original = build.apply_acceleration
    monkeypatch.setattr(build, "apply_acceleration", lambda acc, *b: applied.append(len(b)) or original(acc, *b))
    sam = build_backends(ModelConfig(segmenter=segmenter_dir, autocast="bfloat16"), roles=("segmenter",)).segmenter
    assert sam.autocast == torch.bfloat16 and applied == [1]
    predictor = Predictor(detector=detector_dir, segmenter=sam)  # the builder loads the detector alone
    assert applied == [1, 1]
    assert predictor.segmenter.autocast == torch.bfloat16 and predictor.detector.autocast is None


def test_settings_for_loading_are_refused_with_built_backends(tiny_model_dirs):
    backends = build_backends(ModelConfig(detector=str(tiny_model_dirs[0]), segmenter=str(tiny_model_dirs[1])))
    with pytest.raises(InputError, match="already built"):
        Predictor(detector=backends.detector, segmenter=backends.segmenter, device="cpu")
    with pytest.raises(InputError, match="replaces the detector"):
        Predictor(detector=backends.detector, model=backends.segmenter)


def test_a_backend_class_by_name_is_built_as_a_checkpoint_is(photo):
    from grounded.errors import ModelLoadError
    from grounded.testing.fake import FAKE_DETECTOR, FAKE_SEGMENTER, FakePredictor

    by_name = Predictor(FAKE_DETECTOR, FAKE_SEGMENTER)
    in_process = FakePredictor()
    assert by_name.describe() == in_process.describe()
    got, want = by_name.segment_batch([photo], CLASSES)[0], in_process.segment_batch([photo], CLASSES)[0]
    np.testing.assert_array_equal(got.mask, want.mask)
    with pytest.raises(ModelLoadError, match="is not a Detector"):
        Predictor(FAKE_SEGMENTER, FAKE_SEGMENTER)
    with pytest.raises(ModelLoadError, match="cannot be imported"):
        Predictor("grounded.testing.fake:NoSuchClass", FAKE_SEGMENTER)


def test_the_default_builds_fingerprint_is_unchanged(tiny_model_dirs, monkeypatch):
    """describe() of the default build (the resume fingerprint of label runs and distill), byte for byte: the
    default names, float32, every option, nothing else (the tiny models stand in for the hub's)."""
    from dataclasses import asdict

    from grounded.config import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, SegmentOptions

    folders = dict(zip(("detector", "segmenter"), (str(d) for d in tiny_model_dirs), strict=True))
    original = registry.load_backend

    def tiny_in_place_of_the_hub(name, role, *args, **kwargs):
        backend = original(folders[role], role, *args, **kwargs)
        backend.name = name
        return backend

    monkeypatch.setattr(registry, "load_backend", tiny_in_place_of_the_hub)
    expected = {"detector": DEFAULT_DETECTOR, "segmenter": DEFAULT_SEGMENTER, "dtype": "float32",
                "options": asdict(SegmentOptions())}
    for predictor in (Predictor(), load_predictor(), Predictor.from_pretrained()):
        assert json.dumps(predictor.describe()) == json.dumps(expected)
