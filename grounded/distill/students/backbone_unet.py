"""A U-Net decoder over any transformers ``AutoBackbone`` (ResNet, ConvNeXt, Swin, DINOv2-with-registers...).

The backbone gives four feature maps at strides 4, 8, 16 and 32 (``out_indices=[1, 2, 3, 4]``). The decoder
walks back up: project the deepest map to ``decoder_channels``, then repeatedly up-sample x2, concatenate the
next shallower map and apply a :class:`~grounded.distill.students.unet.ConvBlock`; a 1x1 head gives logits
at stride 4 (the Student up-samples them). Input sides must be multiples of 32.

Loading::

    BackboneUNet.from_pretrained("microsoft/resnet-18", num_classes=5)   # ImageNet features (downloads once)
    BackboneUNet.from_pretrained("/models/resnet-18", num_classes=5)     # a local folder, offline
    BackboneUNet(AutoBackbone.from_config(ResNetConfig(...)), num_classes=5)   # random init, tests
"""

from __future__ import annotations

import torch
from torch import nn

from grounded.distill.students.unet import ConvBlock, UpBlock
from grounded.errors import ModelLoadError

OUT_INDICES = [1, 2, 3, 4]  # stages at strides 4, 8, 16, 32


class BackboneUNet(nn.Module):
    """Normalised images (B, 3, H, W) -> logits (B, num_classes, H, W) through a backbone + U-Net decoder."""

    stride = 32

    def __init__(self, backbone: nn.Module, num_classes: int, decoder_channels: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        channels = list(backbone.channels)
        if len(channels) != 4:
            raise ValueError(f"BackboneUNet needs 4 feature maps (strides 4..32), the backbone gives {len(channels)}")
        self.project = ConvBlock(channels[-1], decoder_channels)
        self.decoders = nn.ModuleList(UpBlock(decoder_channels, c, decoder_channels) for c in reversed(channels[:-1]))
        self.head = nn.Conv2d(decoder_channels, num_classes, kernel_size=1)

    @classmethod
    def from_pretrained(cls, name_or_path: str, num_classes: int, decoder_channels: int = 64) -> BackboneUNet:
        from transformers import AutoBackbone

        try:
            backbone = AutoBackbone.from_pretrained(name_or_path, out_indices=OUT_INDICES)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load backbone {name_or_path!r} ({exc}); without network access, download it elsewhere "
                "(huggingface-cli download NAME --local-dir DIR) and pass the local folder instead"
            ) from None
        return cls(backbone, num_classes, decoder_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = list(self.backbone(pixel_values=x).feature_maps)
        y = self.project(features.pop())
        for decoder in self.decoders:
            y = decoder(y, features.pop())
        return self.head(y)  # (B, num_classes, H / 4, W / 4): the Student up-samples
