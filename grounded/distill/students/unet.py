"""A U-Net in pure torch: encoder-decoder with skip connections (Ronneberger et al., 2015).

Layout for ``depth = d`` and ``base_channels = c``::

    level 0   (H,        W)        c          --skip-->  decoder 0 -> 1x1 head -> logits (B, K, H, W)
    level 1   (H/2,      W/2)      2c         --skip-->  decoder 1
    ...
    level d   (H/2**d,   W/2**d)   c * 2**d   bottleneck

Each level is two 3x3 conv + BatchNorm + ReLU; down-sampling is 2x2 max pooling, up-sampling bilinear x2
followed by concatenation with the skip and two convs. The input side must be a multiple of ``2**depth``
(the predictor pads to it). No torchvision, no timm: it exports to ONNX with a dynamic image size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Two (3x3 conv, BatchNorm, ReLU): (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """Up-sample x2, concatenate the skip, ConvBlock: (B, C_in, h, w) + (B, C_skip, 2h, 2w) -> (B, C_out, 2h, 2w)."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.block = ConvBlock(c_in + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    """U-Net mapping normalised images (B, 3, H, W) to class logits (B, num_classes, H, W)."""

    def __init__(self, num_classes: int, base_channels: int = 16, depth: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError(f"UNet needs depth >= 1 and base_channels >= 1, got {depth}, {base_channels}")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stride = 2**depth  # input sides must be multiples of this
        self.encoders = nn.ModuleList([ConvBlock(in_channels, widths[0])])
        self.encoders.extend(ConvBlock(widths[i], widths[i + 1]) for i in range(depth))
        self.decoders = nn.ModuleList(UpBlock(widths[i + 1], widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for decoder in self.decoders:
            x = decoder(x, skips.pop())
        return self.head(x)
