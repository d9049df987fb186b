"""``compile=True`` (``--compile``): the SAM family's mask decoder through torch.compile, equal to eager.

The tests trace with torch.compile's "eager" backend (dynamo's graph capture and guards on transformers' code,
which is what could break, without inductor's code generation: ~40 s per graph on a CPU). Inductor's agreement
is measured by benchmarks/clicks.py --compile (SAM ViT-B's decoder: equal to 1e-8).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from grounded.config import Acceleration
from grounded.models import acceleration as acc
from grounded.models.interfaces import PointPrompt
from grounded.models.registry import load_backend
from grounded.testing.tiny import build_tiny_segmenter
from grounded.testing.tiny_segmenters import build_tiny_sam2


@pytest.fixture
def traced(monkeypatch):
    torch._dynamo.reset()
    monkeypatch.setattr(acc, "COMPILER", "eager")
    yield
    torch._dynamo.reset()


BUILDERS = [("sam", build_tiny_segmenter), ("sam2", build_tiny_sam2)]


@pytest.mark.parametrize(("name", "build"), BUILDERS)
def test_compiled_decoder_equals_eager(name, build, tmp_path, traced):
    if name == "sam2":
        pytest.importorskip("torchvision")  # Sam2ImageProcessor
    folder = build(tmp_path / name)
    eager = load_backend(str(folder), "segmenter", torch.device("cpu"), torch.float32)
    compiled = load_backend(str(folder), "segmenter", torch.device("cpu"), torch.float32)
    acc.apply_acceleration(Acceleration(compile=True), compiled)
    decoder = compiled.model.get_submodule("mask_decoder")
    assert decoder._compiled_call_impl is not None  # compiled in place: the backend's own object
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    features = eager.encode([image])
    boxes = np.array([[10, 10, 60, 50], [30, 20, 110, 85], [0, 0, 120, 90]], dtype=np.float32)
    for n, multimask in [(1, True), (3, False)]:  # another box count: dynamic shapes
        want, want_iou = eager.decode(features, 0, boxes[:n], multimask)
        got, got_iou = compiled.decode(features, 0, boxes[:n], multimask)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_iou, want_iou, atol=1e-5, rtol=1e-5)
    prompt = PointPrompt.of([[20, 30], [70, 40], [100, 80]], [1, 0, 1], None, None, image_hw=(90, 120))
    want, _ = eager.decode_points(features, 0, prompt, False)
    got, _ = compiled.decode_points(features, 0, prompt, False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_compile_is_idempotent_and_skips_backends_without_modules(tiny_model_dirs, traced, caplog):
    detector_dir, segmenter_dir = tiny_model_dirs
    segmenter = load_backend(str(segmenter_dir), "segmenter", torch.device("cpu"), torch.float32)
    assert acc.compile_modules(segmenter) == ["mask_decoder"]
    impl = segmenter.model.mask_decoder._compiled_call_impl
    assert acc.compile_modules(segmenter) == ["mask_decoder"]
    assert segmenter.model.mask_decoder._compiled_call_impl is impl  # not wrapped twice
    detector = load_backend(str(detector_dir), "detector", torch.device("cpu"), torch.float32)
    with caplog.at_level(logging.INFO, logger="grounded.models.acceleration"):
        assert acc.compile_modules(detector) == []
    assert "has no module that gains from it" in caplog.text


@pytest.mark.parametrize("value", ["yes", 1])
def test_compile_must_be_a_bool(value):
    from grounded.errors import InputError

    with pytest.raises(InputError, match="compile must be True, False or None"):
        Acceleration(compile=value)


def test_compile_is_not_part_of_a_runs_identity():
    assert Acceleration(compile=True).result_settings() == Acceleration().result_settings()
