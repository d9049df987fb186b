"""FastSeg: a real-time segmentation network in pure torch, trained from scratch (the default student).

Built the way real-time networks are (Fast-SCNN, Poudel et al. 2019; BiSeNetV2, Yu et al. 2021; LR-ASPP from
MobileNetV3, Howard et al. 2019; PP-LiteSeg, Peng et al. 2022): the image is down-sampled at once, almost all
compute is spent at 1/8 to 1/32 of the input resolution in depthwise-separable inverted residual blocks,
and a light decoder walks back up with one high-resolution skip::

    input (H, W)
    stem      3x3 conv s2 -> DSConv s2                     1/4   c4    --------------- skip -----------+
    stage 8   inverted residuals (first s2)               1/8   c8    -- lateral --------+           |
    stage 16  inverted residuals (first s2)               1/16  c16   -- lateral --+     |           |
    stage 32  inverted residuals (first s2)               1/32  c32                |     |           |
    context   LR-ASPP: 1x1 conv x sigmoid(global pool)    1/32  d                  |     |           |
    decoder   up x2 + lateral, DSConv  (1/16) -> up x2 + lateral, DSConv  (1/8) -> up x2, concat skip,
              DSConv (1/4) -> 1x1 head -> logits (B, num_outputs, H / 4, W / 4)

DSConv: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU. Inverted residual (MobileNetV2): 1x1 expand,
depthwise 3x3, 1x1 project, residual when shape is kept. Input sides must be multiples of 32 (``stride``);
everything is plain conv / interpolate, so it exports to ONNX with a dynamic image size.

Sizes (:data:`grounded.distill.config.FAST_SIZES`): ``tiny``, ``small`` (default), ``base``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBNAct(nn.Sequential):
    """Conv (k x k, stride, groups) + BatchNorm [+ ReLU]: (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DSConv(nn.Sequential):
    """Depthwise-separable conv: depthwise 3x3 (stride) + pointwise 1x1, each with BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(ConvBNAct(c_in, c_in, 3, stride, groups=c_in), ConvBNAct(c_in, c_out, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (x ``expand``), depthwise 3x3 (stride), 1x1 linear projection (+ input)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = c_in * expand
        self.block = nn.Sequential(
            ConvBNAct(c_in, hidden, 1), ConvBNAct(hidden, hidden, 3, stride, groups=hidden), ConvBNAct(hidden, c_out, 1, act=False)
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _stage(c_in: int, c_out: int, blocks: int, expand: int) -> nn.Sequential:
    layers = [InvertedResidual(c_in, c_out, 2, expand)]
    layers += [InvertedResidual(c_out, c_out, 1, expand) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class LRASPP(nn.Module):
    """Lite R-ASPP context (MobileNetV3): ``relu(bn(conv1x1(x))) * sigmoid(conv1x1(global_avg_pool(x)))``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.branch = ConvBNAct(c_in, c_out, 1)
        self.gate = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(x) * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class FastSeg(nn.Module):
    """Normalised images (B, 3, H, W) -> logits (B, num_outputs, H, W); see the module docstring.

    Args:
        widths: channels (stem, 1/4, 1/8, 1/16, 1/32).
        blocks: inverted residual blocks at 1/8, 1/16, 1/32.
        decoder: decoder width ``d``.
        expand: expansion ratio of the inverted residuals.
    """

    stride = 32

    def __init__(self, num_outputs: int, widths: tuple[int, ...] = (16, 32, 48, 96, 160),
                 blocks: tuple[int, ...] = (2, 3, 3), decoder: int = 64, expand: int = 4) -> None:
        super().__init__()
        c0, c4, c8, c16, c32 = widths
        self.stem = nn.Sequential(ConvBNAct(3, c0, 3, 2), DSConv(c0, c4, 2))
        self.stage8 = _stage(c4, c8, blocks[0], expand)
        self.stage16 = _stage(c8, c16, blocks[1], expand)
        self.stage32 = _stage(c16, c32, blocks[2], expand)
        self.context = LRASPP(c32, decoder)
        self.lateral16 = ConvBNAct(c16, decoder, 1, act=False)
        self.lateral8 = ConvBNAct(c8, decoder, 1, act=False)
        self.fuse16 = DSConv(decoder, decoder)
        self.fuse8 = DSConv(decoder, decoder)
        self.fuse4 = DSConv(decoder + c4, decoder)
        self.head = nn.Conv2d(decoder, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f4 = self.stem(x)
        f8 = self.stage8(f4)
        f16 = self.stage16(f8)
        y = self.context(self.stage32(f16))
        y = self.fuse16(_up(y, f16) + self.lateral16(f16))
        y = self.fuse8(_up(y, f8) + self.lateral8(f8))
        y = self.fuse4(torch.cat([_up(y, f4), f4], dim=1))
        return self.head(y)  # (B, num_outputs, H / 4, W / 4): the Student up-samples
