"""Students through transformers' ``*ForSemanticSegmentation`` models: SegFormer, DeepLabV3 + MobileNetV2, MobileViTV2.

One wrapper, :class:`HFSemanticStudent`, serves the three families of :data:`FAMILIES`; each maps normalised
images (B, 3, H, W) to the model's own low-resolution logits (B, num_outputs, H / s, W / s), which
:class:`~grounded.distill.students.Student` up-samples. Input sides must be multiples of 32.

- ``segformer``: ``SegformerForSemanticSegmentation`` (Xie et al., 2021), Mix-Transformer encoder + all-MLP
  decoder, logits at stride 4; random sizes ``b0``..``b5``; weights e.g. ``nvidia/mit-b0``.
- ``mobilenet_deeplab``: ``MobileNetV2ForSemanticSegmentation``, MobileNetV2 + DeepLabV3 (ASPP) head, output
  stride 8; random sizes are depth multipliers (``"1.0"``, ``"0.75"``, ``"0.5"``, ``"0.35"``); weights e.g.
  ``google/deeplabv3_mobilenet_v2_1.0_513``.
- ``mobilevit``: ``MobileViTV2ForSemanticSegmentation``, MobileViTV2 + DeepLabV3 head, output stride 16; random
  sizes are width multipliers (``"0.5"`` ... ``"2.0"``); weights e.g. ``apple/mobilevitv2-1.0-imagenet1k-256``.

Loading::

    HFSemanticStudent.from_pretrained("segformer", "nvidia/mit-b0", num_outputs=6)   # ImageNet encoder, new head
    HFSemanticStudent.from_pretrained("mobilevit", "/models/mobilevitv2", 6)        # a local folder, offline
    HFSemanticStudent.from_size("mobilenet_deeplab", "0.35", 6)                      # random init, no download
    HFSemanticStudent.from_config_dict("segformer", config.to_dict(), 6)            # any config (tests, reloads)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from grounded.distill.config import SEGFORMER_SIZES
from grounded.errors import InputError, ModelLoadError

# arch -> (config class, model class, default random size, size -> config overrides, example weights)
FAMILIES: dict[str, tuple[str, str, str, Any, str]] = {
    "segformer": ("SegformerConfig", "SegformerForSemanticSegmentation", "b0",
                  lambda size: dict(SEGFORMER_SIZES[size]) if size in SEGFORMER_SIZES else None, "nvidia/mit-b0"),
    "mobilenet_deeplab": ("MobileNetV2Config", "MobileNetV2ForSemanticSegmentation", "1.0",
                          lambda size: {"depth_multiplier": float(size), "output_stride": 8},
                          "google/deeplabv3_mobilenet_v2_1.0_513"),
    "mobilevit": ("MobileViTV2Config", "MobileViTV2ForSemanticSegmentation", "1.0",
                  lambda size: {"width_multiplier": float(size), "output_stride": 16},
                  "apple/mobilevitv2-1.0-imagenet1k-256"),
}
_LABEL_KEYS = ("num_labels", "id2label", "label2id")


def _classes(arch: str) -> tuple[type, type]:
    import transformers

    config_name, model_name = FAMILIES[arch][:2]
    return getattr(transformers, config_name), getattr(transformers, model_name)


class HFSemanticStudent(nn.Module):
    """Wraps a transformers semantic-segmentation model; ``forward`` returns logits at the input size."""

    stride = 32

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config_dict(cls, arch: str, config: dict, num_outputs: int) -> HFSemanticStudent:
        config_cls, model_cls = _classes(arch)
        config = {k: v for k, v in config.items() if k not in _LABEL_KEYS}
        return cls(model_cls(config_cls.from_dict({**config, "num_labels": num_outputs})))

    @classmethod
    def from_size(cls, arch: str, size: str | None, num_outputs: int) -> HFSemanticStudent:
        default, sizes = FAMILIES[arch][2], FAMILIES[arch][3]
        try:
            overrides = sizes(size or default)
        except ValueError:
            overrides = None
        if overrides is None:
            raise InputError(f"{arch} size {size!r} is unknown; e.g. {default!r} (see grounded.distill.students.hf_semantic)")
        return cls.from_config_dict(arch, overrides, num_outputs)

    @classmethod
    def from_pretrained(cls, arch: str, name_or_path: str, num_outputs: int) -> HFSemanticStudent:
        model_cls = _classes(arch)[1]
        try:
            model = model_cls.from_pretrained(name_or_path, num_labels=num_outputs, ignore_mismatched_sizes=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load {arch} weights {name_or_path!r} ({exc}); without network access, download them elsewhere "
                f"(huggingface-cli download {FAMILIES[arch][4]} --local-dir DIR) and pass the local folder instead"
            ) from None
        return cls(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits  # (B, K, H / s, W / s): the Student up-samples
