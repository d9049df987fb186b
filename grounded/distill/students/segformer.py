"""SegFormer students through transformers' ``SegformerForSemanticSegmentation`` (Xie et al., 2021).

A Mix-Transformer encoder (``nvidia/mit-b0`` ... ``b5``) with an all-MLP decoder; its logits come at stride
4 and are up-sampled x4 here, so the wrapper maps normalised images (B, 3, H, W) to logits
(B, num_classes, H, W). Input sides must be multiples of 32.

Loading::

    SegformerStudent.from_pretrained("nvidia/mit-b0", num_classes=5)    # ImageNet encoder, new decode head
    SegformerStudent.from_pretrained("/models/mit-b0", num_classes=5)   # a local folder, offline
    SegformerStudent.from_size("b0", num_classes=5)                     # random init from a config, no download
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from grounded.distill.config import SEGFORMER_SIZES
from grounded.errors import InputError, ModelLoadError


class SegformerStudent(nn.Module):
    """Wraps a ``SegformerForSemanticSegmentation``; ``forward`` returns full-resolution logits."""

    stride = 32

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @classmethod
    def from_config_dict(cls, config: dict, num_classes: int) -> SegformerStudent:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation

        config = {k: v for k, v in config.items() if k not in ("num_labels", "id2label", "label2id")}
        return cls(SegformerForSemanticSegmentation(SegformerConfig(**config, num_labels=num_classes)))

    @classmethod
    def from_size(cls, size: str, num_classes: int) -> SegformerStudent:
        if size not in SEGFORMER_SIZES:
            raise InputError(f"SegFormer size {size!r} is unknown; choose one of {sorted(SEGFORMER_SIZES)}")
        return cls.from_config_dict(dict(SEGFORMER_SIZES[size]), num_classes)

    @classmethod
    def from_pretrained(cls, name_or_path: str, num_classes: int) -> SegformerStudent:
        from transformers import SegformerForSemanticSegmentation

        try:
            model = SegformerForSemanticSegmentation.from_pretrained(
                name_or_path, num_labels=num_classes, ignore_mismatched_sizes=True
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load SegFormer {name_or_path!r} ({exc}); without network access, download it elsewhere "
                "(huggingface-cli download nvidia/mit-b0 --local-dir DIR) and pass the local folder instead"
            ) from None
        return cls(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(pixel_values=x).logits  # (B, K, H/4, W/4)
        return F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
