"""Students: every architecture builds offline, maps (B, 3, H, W) to (B, K + 1 + boundary, H, W), learns (its
loss falls in a few steps), rebuilds from its checkpoint, and exports to ONNX with parity at two sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grounded.distill.checkpoint import load_student, save_student
from grounded.distill.config import StudentConfig
from grounded.distill.export import PARITY_ATOL, export_onnx
from grounded.distill.losses import SegmentationLoss
from grounded.distill.predictor import StudentPredictor
from grounded.distill.students import build_student, profile
from grounded.errors import InputError, ModelLoadError


def tiny_resnet() -> dict:
    from transformers import ResNetConfig

    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]).to_dict()


def tiny_segformer() -> dict:
    from transformers import SegformerConfig

    return SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 1, 1],
                           decoder_hidden_size=16).to_dict()


def tiny_mobilenet() -> dict:
    from transformers import MobileNetV2Config

    return MobileNetV2Config(depth_multiplier=0.35, output_stride=8, classifier_dropout_prob=0.0).to_dict()


def tiny_mobilevit() -> dict:
    from transformers import MobileViTV2Config

    return MobileViTV2Config(width_multiplier=0.25, n_attn_blocks=[1, 1, 1], aspp_out_channels=16, output_stride=16,
                             aspp_dropout_prob=0.0, classifier_dropout_prob=0.0).to_dict()


NAMES = ["a", "b"]
STUDENTS = {
    "fast-tiny": lambda: StudentConfig(arch="fast", size="tiny", class_names=NAMES),
    "fast-small-no-boundary": lambda: StudentConfig(size="small", boundary_head=False, class_names=NAMES),
    "unet-custom": lambda: StudentConfig(arch="unet", base_channels=4, depth=2, class_names=NAMES),
    "segformer": lambda: StudentConfig(arch="segformer", hf_config=tiny_segformer(), class_names=NAMES),
    "mobilenet-deeplab": lambda: StudentConfig(arch="mobilenet_deeplab", hf_config=tiny_mobilenet(), class_names=NAMES),
    "mobilevit": lambda: StudentConfig(arch="mobilevit", hf_config=tiny_mobilevit(), class_names=NAMES),
    "resnet-unet": lambda: StudentConfig(arch="backbone_unet", backbone_config=tiny_resnet(), decoder_channels=8,
                                         class_names=NAMES),
}


@pytest.fixture(params=list(STUDENTS), scope="module")
def student(request):
    torch.manual_seed(0)
    return build_student(STUDENTS[request.param]()).eval()


def test_output_is_input_size_with_background_and_boundary_channels(student):
    channels = 3 + int(student.config.boundary_head)
    with torch.no_grad():
        for batch, height, width in ((2, 64, 96), (1, 96, 64)):
            assert student(torch.rand(batch, 3, height, width)).shape == (batch, channels, height, width)
    stats = profile(student, 64)
    assert stats["params"] == sum(p.numel() for p in student.parameters()) and stats["gflops"] > 0


def test_a_few_steps_lower_the_loss(student):
    torch.manual_seed(0)
    target = torch.zeros(2, 2, 64, 64, dtype=torch.long)
    target[:, 0, 8:40, 8:30], target[:, 0, 20:56, 36:60] = 1, 2
    target[:, 1, 20:40, 28:32] = 1
    pixels = torch.rand(2, 3, 64, 64) * 0.2 + (target[:, :1] > 0).float() * 0.6
    loss_fn = SegmentationLoss(boundary_pos_weight=5.0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student.train()
    losses = []
    for _ in range(10):
        loss, _ = loss_fn(student(pixels), target, num_classes=3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    student.eval()
    assert losses[-1] < 0.95 * losses[0] and losses[-1] == min(losses), losses


def test_saved_student_rebuilds_offline_to_identical_outputs(student, tmp_path):
    save_student(student, tmp_path, image_size=64)
    again, record = load_student(tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(student(x), again(x))
    assert record["image_size"] == 64 and record["student"]["arch"] == student.config.arch


def test_onnx_matches_torch_at_two_sizes(student, tmp_path, request):
    pytest.importorskip("onnxruntime")
    if student.config.arch == "mobilevit":  # a known limit, kept visible: the test fails if it starts to pass
        request.applymarker(pytest.mark.xfail(strict=True, reason="torch's TorchScript ONNX exporter cannot "
                                              "translate col2im (MobileViTV2's fold) with a dynamic size"))
    path = export_onnx(student, tmp_path / "s.onnx", image_size=64)
    onnx_predictor = StudentPredictor.load(path)
    assert onnx_predictor.class_names == NAMES and onnx_predictor.stride == student.stride
    assert onnx_predictor.boundary_head == student.config.boundary_head
    for height, width in ((64, 64), (96, 128)):  # dynamic image size
        x = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        with torch.no_grad():
            expected = student(torch.from_numpy(x), full_size=False).numpy()
        assert np.abs(onnx_predictor.run(x) - expected).max() < PARITY_ATOL


def test_predictor_gives_instances_at_image_size(student):
    predictor = StudentPredictor.from_module(student, image_size=64, device="cpu", min_area=1)
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    probs, boundary = predictor.outputs(image)
    assert probs.shape == (3, 50, 70) and np.allclose(probs.sum(0), 1, atol=1e-5)
    assert (boundary is not None) == student.config.boundary_head
    detections = predictor.predict(image)
    assert detections.mask.shape[1:] == (50, 70) and set(detections.class_id.tolist()) <= {0, 1}


def test_old_records_without_a_boundary_head_still_load(tmp_path):
    old = StudentConfig(arch="unet", size="tiny", class_names=NAMES, boundary_head=False)
    torch.manual_seed(0)
    save_student(build_student(old), tmp_path, image_size=64)
    record = (tmp_path / "student.json").read_text().replace('"boundary_head": false,', "")
    (tmp_path / "student.json").write_text(record)
    student, _ = load_student(tmp_path)
    assert not student.config.boundary_head and student(torch.rand(1, 3, 32, 32)).shape[1] == 3


@pytest.mark.parametrize(
    "config, error",
    [
        (lambda: StudentConfig(arch="fast", size="huge", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="unet", size="huge", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="segformer", size="b9", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="mobilevit", size="wide", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="backbone_unet", class_names=["a"]), InputError),
        (lambda: StudentConfig(arch="fast", class_names=[]), InputError),
        (lambda: StudentConfig(arch="segformer", pretrained="/nonexistent/mit-b0", class_names=["a"]), ModelLoadError),
        (lambda: StudentConfig(arch="mobilenet_deeplab", pretrained="/nonexistent/m", class_names=["a"]), ModelLoadError),
    ],
)
def test_bad_configs_raise_clear_errors(config, error):
    with pytest.raises(error):
        build_student(config())


def test_unknown_arch_is_rejected():
    with pytest.raises(InputError, match="unknown"):
        StudentConfig(arch="resnet")
