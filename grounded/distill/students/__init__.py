"""Students: small segmentation networks trained on the teacher's labels.

:func:`build_student` turns a :class:`~grounded.distill.config.StudentConfig` into a :class:`Student`, one
``nn.Module`` whose interface does not depend on the architecture:

- input: RGB images as float (B, 3, H, W) in [0, 1], H and W multiples of ``student.stride``
  (normalisation with the config's mean/std happens inside, so ONNX exports take raw [0, 1] pixels);
- output: logits (B, K + 1 [+ 1], H, W) (``full_size=False``: at the network's output stride); channel 0 is background, channel c + 1 is ``class_names[c]``; with
  ``config.boundary_head`` a last channel scores instance boundaries (see :mod:`grounded.distill.instances`).

Architectures (``StudentConfig.arch``):

- ``"fast"`` (default): :class:`~.fastseg.FastSeg`, pure torch, real-time, from scratch (tiny/small/base);
- ``"unet"``: :class:`~.unet.UNet`, pure torch, full resolution, from scratch (tiny/small/base/large);
- ``"segformer"``, ``"mobilenet_deeplab"``, ``"mobilevit"``: :class:`~.hf_semantic.HFSemanticStudent` over
  transformers' SegFormer / DeepLabV3 + MobileNetV2 / MobileViTV2, from ``pretrained`` (Hugging Face name or
  local folder) or randomly initialised at ``size``;
- ``"backbone_unet"``: :class:`~.backbone_unet.BackboneUNet`, a U-Net decoder over an ``AutoBackbone``
  loaded from ``pretrained`` or built from ``backbone_config`` (a transformers config dict).

After building, ``config.hf_config`` holds the transformers config, so a saved student is rebuilt offline
with ``build_student(config, pretrained_weights=False)`` and its safetensors loaded over it.
:func:`profile` gives a student's parameters and GFLOPs at an input size
(``torch.utils.flop_counter.FlopCounterMode``: one multiply-add counts as 2 FLOPs).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from grounded.distill.config import FAST_SIZES, UNET_SIZES, StudentConfig
from grounded.errors import InputError

__all__ = ["Student", "build_student", "profile"]


class Student(nn.Module):
    """Normalisation + network: pixels (B, 3, H, W) in [0, 1] -> logits (B, K + 1 [+ 1 boundary], H, W)."""

    def __init__(self, config: StudentConfig, net: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.net = net
        self.stride: int = int(net.stride)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor, full_size: bool = True) -> torch.Tensor:
        """Logits at the input size; ``full_size=False``: at the network's own output stride (FastSeg: 1/4),
        which deployment up-samples once, straight to the image's size (what the ONNX export does)."""
        logits = self.net((pixels - self.mean) / self.std)
        if full_size and logits.shape[-2:] != pixels.shape[-2:]:
            logits = F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        return logits


def _build_fast(config: StudentConfig) -> nn.Module:
    from grounded.distill.students.fastseg import FastSeg

    if config.size not in FAST_SIZES:
        raise InputError(f"FastSeg size {config.size!r} is unknown; choose one of {list(FAST_SIZES)}")
    return FastSeg(config.num_outputs, **FAST_SIZES[config.size])


def _build_unet(config: StudentConfig) -> nn.Module:
    from grounded.distill.students.unet import UNet

    if config.size not in UNET_SIZES:
        raise InputError(f"U-Net size {config.size!r} is unknown; choose one of {list(UNET_SIZES)}")
    base, depth = UNET_SIZES[config.size]
    return UNet(config.num_outputs, config.base_channels or base, config.depth or depth)


def _build_hf_semantic(config: StudentConfig, pretrained_weights: bool) -> nn.Module:
    from grounded.distill.students.hf_semantic import HFSemanticStudent

    if config.pretrained and pretrained_weights:
        net = HFSemanticStudent.from_pretrained(config.arch, config.pretrained, config.num_outputs)
    elif config.hf_config is not None:  # a reload, or a config given in full (tests)
        net = HFSemanticStudent.from_config_dict(config.arch, config.hf_config, config.num_outputs)
    else:
        net = HFSemanticStudent.from_size(config.arch, config.size, config.num_outputs)
    config.hf_config = net.model.config.to_dict()
    return net


def _build_backbone_unet(config: StudentConfig, pretrained_weights: bool) -> nn.Module:
    from transformers import AutoBackbone, AutoConfig

    from grounded.distill.students.backbone_unet import OUT_INDICES, BackboneUNet

    if config.pretrained and pretrained_weights:
        net = BackboneUNet.from_pretrained(config.pretrained, config.num_outputs, config.decoder_channels)
    else:
        spec = config.hf_config or config.backbone_config
        if not spec or "model_type" not in spec:
            raise InputError(
                "backbone_unet needs 'pretrained' (a Hugging Face name or local folder) or 'backbone_config' "
                "(a transformers config dict with 'model_type', e.g. ResNetConfig(...).to_dict())"
            )
        spec = dict(spec)
        if config.hf_config is None:  # a user's backbone config: ask for the four stages at strides 4..32
            spec.pop("out_features", None)
            spec["out_indices"] = OUT_INDICES
        hf = AutoConfig.for_model(spec.pop("model_type"), **spec)
        net = BackboneUNet(AutoBackbone.from_config(hf), config.num_outputs, config.decoder_channels)
    config.hf_config = net.backbone.config.to_dict()
    return net


def build_student(config: StudentConfig, pretrained_weights: bool = True) -> Student:
    """Build the student ``config`` describes (weights: pretrained if named, else random; seed torch first).

    ``pretrained_weights=False`` rebuilds from ``config.hf_config`` without touching the network or disk,
    for loading a saved checkpoint over it.
    """
    if not config.class_names:
        raise InputError("student config has no class_names: a student needs at least one class")
    if config.arch == "fast":
        net = _build_fast(config)
    elif config.arch == "unet":
        net = _build_unet(config)
    elif config.arch == "backbone_unet":
        net = _build_backbone_unet(config, pretrained_weights)
    else:
        net = _build_hf_semantic(config, pretrained_weights)
    return Student(config, net)


def profile(student: Student, size: int | tuple[int, int]) -> dict[str, float]:
    """{"params": count, "gflops": forward GFLOPs of one image at ``size`` (side, or (H, W))}; eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = (size, size) if isinstance(size, int) else size
    stride = student.stride
    height, width = -(-height // stride) * stride, -(-width // stride) * stride
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        student(torch.zeros(1, 3, height, width, device=device))
    student.train(was_training)
    return {"params": float(sum(p.numel() for p in student.parameters())), "gflops": counter.get_total_flops() / 1e9}
