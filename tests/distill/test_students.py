"""Students: every architecture maps (B, 3, H, W) to (B, K + 1, H, W), rebuilds offline, and exports to ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded.distill.checkpoint import load_student, save_student
from grounded.distill.config import StudentConfig
from grounded.distill.export import PARITY_ATOL, export_onnx
from grounded.distill.predictor import StudentPredictor
from grounded.distill.students import build_student
from grounded.errors import InputError, ModelLoadError


def tiny_resnet() -> dict:
    from transformers import ResNetConfig

    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]).to_dict()


STUDENTS = {
    "unet-tiny": lambda: StudentConfig(arch="unet", size="tiny", class_names=["a", "b"]),
    "unet-custom": lambda: StudentConfig(arch="unet", base_channels=4, depth=2, class_names=["a", "b"]),
    "segformer-b0": lambda: StudentConfig(arch="segformer", size="b0", class_names=["a", "b"]),
    "resnet-unet": lambda: StudentConfig(arch="backbone_unet", backbone_config=tiny_resnet(), decoder_channels=8,
                                         class_names=["a", "b"]),
}


@pytest.fixture(params=list(STUDENTS), scope="module")
def student(request):
    torch.manual_seed(0)
    return build_student(STUDENTS[request.param]()).eval()


@pytest.mark.parametrize("shape", [(2, 64, 96), (1, 96, 64)])
def test_output_shape_is_input_size_with_background_channel(student, shape):
    batch, height, width = shape
    with torch.no_grad():
        logits = student(torch.rand(batch, 3, height, width))
    assert logits.shape == (batch, 3, height, width)


def test_saved_student_rebuilds_offline_to_identical_outputs(student, tmp_path):
    save_student(student, tmp_path, image_size=64)
    again, record = load_student(tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(student(x), again(x))
    assert record["image_size"] == 64 and record["student"]["arch"] == student.config.arch


def test_onnx_matches_torch_at_two_sizes(student, tmp_path):
    pytest.importorskip("onnxruntime")
    path = export_onnx(student, tmp_path / "s.onnx", image_size=64)
    onnx_predictor = StudentPredictor.load(path)
    assert onnx_predictor.class_names == ["a", "b"] and onnx_predictor.stride == student.stride
    for height, width in ((64, 64), (96, 128)):  # dynamic image size
        x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        with torch.no_grad():
            expected = student(torch.from_numpy(x)).numpy()
        assert np.abs(onnx_predictor.run(x) - expected).max() < PARITY_ATOL


def test_predictor_gives_instances_at_image_size(student):
    predictor = StudentPredictor.from_module(student, image_size=64, device="cpu", min_area=1)
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    probs = predictor.probs(image)
    assert probs.shape == (3, 50, 70) and np.allclose(probs.sum(0), 1, atol=1e-5)
    detections = predictor.predict(image)
    assert detections.mask.shape[1:] == (50, 70) and set(detections.class_id.tolist()) <= {0, 1}


@pytest.mark.parametrize(
    "config, error",
    [
        (lambda: StudentConfig(arch="unet", size="huge", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="segformer", size="b9", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="backbone_unet", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="unet", class_names=[]), InputError),
        (lambda: StudentConfig(arch="segformer", pretrained="/nonexistent/mit-b0", class_names=["a"]), ModelLoadError),
    ],
)
def test_bad_configs_raise_clear_errors(config, error):
    with pytest.raises(error):
        build_student(config())


def test_unknown_arch_is_rejected():
    with pytest.raises(InputError, match="unknown"):
        StudentConfig(arch="resnet")
