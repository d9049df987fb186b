"""runtime="onnxruntime": the SAM family's image encoders run by ONNX Runtime equal PyTorch's, are exported once
per checkpoint into the cache, and every combination it cannot run is refused with the reason."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from grounded import Predictor
from grounded.config import Acceleration
from grounded.errors import InputError, ModelLoadError
from grounded.models import acceleration as acc
from grounded.models.registry import load_backend
from grounded.testing import tiny_segmenters
from grounded.testing.tiny import build_tiny_segmenter

pytest.importorskip("onnxruntime")

BUILDERS = {  # model_type -> builder; the SAM 2 family's processors need torchvision
    "sam": (build_tiny_segmenter, ()),
    "sam_hq": (tiny_segmenters.build_tiny_sam_hq, ()),
    "sam2": (tiny_segmenters.build_tiny_sam2, ("torchvision",)),
    "edgetam": (tiny_segmenters.build_tiny_edgetam, ("torchvision", "timm")),
    "sam3_tracker": (tiny_segmenters.build_tiny_sam3_tracker, ("torchvision",)),
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDED_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _load(folder):
    return load_backend(str(folder), "segmenter", torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("model_type", list(BUILDERS))
def test_onnx_encoder_equals_eager(model_type, tmp_path, cache):
    build, needs = BUILDERS[model_type]
    for module in needs:
        pytest.importorskip(module)
    folder = build(tmp_path / model_type)
    eager, onnx = _load(folder), _load(folder)
    acc.apply_acceleration(Acceleration(runtime="onnxruntime"), onnx)
    assert onnx.onnx_encoder is not None
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)]
    want, got = eager.encode(images), onnx.encode(images)  # a batch of two sizes: one image at a time inside
    want_leaves, got_leaves = torch.utils._pytree.tree_leaves(want.__dict__), torch.utils._pytree.tree_leaves(got.__dict__)
    tensors = [(w, g) for w, g in zip(want_leaves, got_leaves, strict=True) if isinstance(w, torch.Tensor)]
    assert tensors
    for w, g in tensors:
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, atol=1e-4 * max(float(w.abs().max()), 1.0), rtol=1e-4)
    boxes = np.array([[10, 10, 60, 50], [30, 20, 110, 85]], dtype=np.float32)
    masks_want, _ = eager.decode(want, 0, boxes, False)
    masks_got, _ = onnx.decode(got, 0, boxes, False)
    assert ((masks_got > 0) != (masks_want > 0)).float().mean() < 1e-3
    assert len(list(cache.glob("*.onnx"))) == 1 and not list(cache.glob("*.tmp"))


def test_a_checkpoint_is_exported_once(tiny_model_dirs, cache):
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    first = _load(tiny_model_dirs[1])
    acc.apply_acceleration(Acceleration(runtime="onnxruntime"), first)
    first.encode([image])
    (path,) = cache.glob("*.onnx")
    stamp = path.stat().st_mtime_ns
    second = _load(tiny_model_dirs[1])  # another process would load the same file: same weights, same name
    acc.apply_acceleration(Acceleration(runtime="onnxruntime"), second)
    second.encode([image])
    assert list(cache.glob("*.onnx")) == [path] and path.stat().st_mtime_ns == stamp
    with torch.no_grad():
        next(second.model.parameters()).add_(1.0)  # other weights: another file
    third = _load(tiny_model_dirs[1])
    with torch.no_grad():
        next(third.model.parameters()).add_(1.0)
    acc.apply_acceleration(Acceleration(runtime="onnxruntime"), third)
    third.encode([image])
    assert len(list(cache.glob("*.onnx"))) == 2


@pytest.mark.parametrize(("settings", "message"), [
    ({"autocast": "bfloat16"}, "--autocast"),
    ({"quantize": "int8"}, "--quantize"),
], ids=["autocast", "int8"])
def test_refused_combinations(settings, message, tiny_model_dirs, cache):
    backend = _load(tiny_model_dirs[1])
    with pytest.raises(InputError, match=message):
        acc.apply_acceleration(Acceleration(runtime="onnxruntime", **settings), backend)
    quantized = torch.ao.nn.quantized.dynamic.Linear
    assert backend.onnx_encoder is None and not any(isinstance(m, quantized) for m in backend.model.modules())


def test_refused_without_an_image_encoder_and_off_the_cpu_float32(tiny_model_dirs, cache):
    detector = load_backend(str(tiny_model_dirs[0]), "detector", torch.device("cpu"), torch.float32)
    with pytest.raises(InputError, match="SAM family's image encoders"):
        acc.apply_acceleration(Acceleration(runtime="onnxruntime"), detector)
    half = load_backend(str(tiny_model_dirs[1]), "segmenter", torch.device("cpu"), torch.bfloat16)
    with pytest.raises(InputError, match="float32 weights on the CPU"):
        acc.apply_acceleration(Acceleration(runtime="onnxruntime"), half)


def test_without_onnxruntime_the_error_names_the_extra(tiny_model_dirs, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModelLoadError, match=r'pip install "grounded\[onnx\]"'):
        acc.apply_acceleration(Acceleration(runtime="onnxruntime"), _load(tiny_model_dirs[1]))


def test_predictor_with_the_onnx_runtime_gives_the_eager_masks(tiny_model_dirs, cache):
    detector, segmenter = (str(p) for p in tiny_model_dirs)
    common = dict(detector=detector, segmenter=segmenter, local_files_only=True, box_threshold=0.05, text_threshold=0.0)
    image = np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    want = Predictor(**common).segment_batch([image], "car . wheel .")[0]
    got = Predictor(**common, runtime="onnxruntime").segment_batch([image], "car . wheel .")[0]
    assert len(want) > 0 and len(got) == len(want)
    assert np.array_equal(got.xyxy, want.xyxy) and np.mean(got.mask != want.mask) < 1e-3
    with pytest.raises(ValueError, match="runtime must be one of"):
        Acceleration(runtime="tensorrt")
