"""Students: small segmentation networks trained on the teacher's labels.

:func:`build_student` turns a :class:`~grounded.distill.config.StudentConfig` into a :class:`Student`, one
``nn.Module`` whose interface does not depend on the architecture:

- input: RGB images as float (B, 3, H, W) in [0, 1], H and W multiples of ``student.stride``
  (normalisation with the config's mean/std happens inside, so ONNX exports take raw [0, 1] pixels);
- output: logits (B, K + 1, H, W); channel 0 is background, channel c + 1 is ``class_names[c]``.

Architectures (``StudentConfig.arch``):

- ``"unet"``: :class:`~.unet.UNet`, pure torch, from scratch, sized by ``size`` (tiny/small/base/large);
- ``"segformer"``: :class:`~.segformer.SegformerStudent`, from ``pretrained`` (Hugging Face name or local
  folder) or, without it, randomly initialised at ``size`` b0..b5;
- ``"backbone_unet"``: :class:`~.backbone_unet.BackboneUNet`, a U-Net decoder over an ``AutoBackbone``
  loaded from ``pretrained`` or built from ``backbone_config`` (a transformers config dict).

After building, ``config.hf_config`` holds the transformers config, so a saved student is rebuilt offline
with ``build_student(config, pretrained_weights=False)`` and its safetensors loaded over it.
"""

from __future__ import annotations

import torch
from torch import nn

from grounded.distill.config import UNET_SIZES, StudentConfig
from grounded.errors import InputError

__all__ = ["Student", "build_student"]


class Student(nn.Module):
    """Normalisation + network: pixels (B, 3, H, W) in [0, 1] -> logits (B, K + 1, H, W)."""

    def __init__(self, config: StudentConfig, net: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.net = net
        self.stride: int = int(net.stride)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net((pixels - self.mean) / self.std)


def _build_unet(config: StudentConfig) -> nn.Module:
    from grounded.distill.students.unet import UNet

    if config.size not in UNET_SIZES:
        raise InputError(f"U-Net size {config.size!r} is unknown; choose one of {list(UNET_SIZES)}")
    base, depth = UNET_SIZES[config.size]
    return UNet(config.num_classes, config.base_channels or base, config.depth or depth)


def _build_segformer(config: StudentConfig, pretrained_weights: bool) -> nn.Module:
    from grounded.distill.students.segformer import SegformerStudent

    if config.hf_config is not None and not (pretrained_weights and config.pretrained):
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        return SegformerStudent(SegformerForSemanticSegmentation(SegformerConfig.from_dict(config.hf_config)))
    if config.pretrained and pretrained_weights:
        net = SegformerStudent.from_pretrained(config.pretrained, config.num_classes)
    else:
        net = SegformerStudent.from_size(config.size if config.size.startswith("b") else "b0", config.num_classes)
    config.hf_config = net.model.config.to_dict()
    return net


def _build_backbone_unet(config: StudentConfig, pretrained_weights: bool) -> nn.Module:
    from transformers import AutoBackbone, AutoConfig

    from grounded.distill.students.backbone_unet import OUT_INDICES, BackboneUNet

    if config.pretrained and pretrained_weights:
        net = BackboneUNet.from_pretrained(config.pretrained, config.num_classes, config.decoder_channels)
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
        net = BackboneUNet(AutoBackbone.from_config(hf), config.num_classes, config.decoder_channels)
    config.hf_config = net.backbone.config.to_dict()
    return net


def build_student(config: StudentConfig, pretrained_weights: bool = True) -> Student:
    """Build the student ``config`` describes (weights: pretrained if named, else random; seed torch first).

    ``pretrained_weights=False`` rebuilds from ``config.hf_config`` without touching the network or disk,
    for loading a saved checkpoint over it.
    """
    if not config.class_names:
        raise InputError("student config has no class_names: a student needs at least one class")
    if config.arch == "unet":
        net = _build_unet(config)
    elif config.arch == "segformer":
        net = _build_segformer(config, pretrained_weights)
    else:
        net = _build_backbone_unet(config, pretrained_weights)
    return Student(config, net)
