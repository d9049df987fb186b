"""Configuration of students and of their training, as plain dataclasses.

Every field has a default that works; the comments say what to change and why. Both classes round-trip
through JSON (``to_dict`` / ``from_dict``) so a run folder records exactly what was trained::

    StudentConfig(arch="unet", size="tiny")            # from scratch, CPU real-time
    StudentConfig(arch="segformer", pretrained="nvidia/mit-b0")
    StudentConfig(arch="backbone_unet", pretrained="microsoft/resnet-18")
    TrainConfig(epochs=30, image_size=320, seed=0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from grounded.errors import InputError

ARCHS = ("unet", "segformer", "backbone_unet")
IGNORE_INDEX = 255  # target value of pixels that take no part in the loss or the metrics (padding, "don't care")

# U-Net sizes: (base_channels, depth). Channels double at every level; the input size must be a multiple
# of 2**depth. "tiny" runs in real time on a laptop CPU at 256 px, "large" is the accurate end.
UNET_SIZES: dict[str, tuple[int, int]] = {"tiny": (8, 3), "small": (16, 4), "base": (32, 4), "large": (64, 5)}

# SegFormer (MiT) encoder sizes b0..b5, for building a randomly initialised model without a download.
SEGFORMER_SIZES: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
    "b3": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 18, 3], "decoder_hidden_size": 768},
    "b4": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 8, 27, 3], "decoder_hidden_size": 768},
    "b5": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 6, 40, 3], "decoder_hidden_size": 768},
}


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):  # type: ignore[no-untyped-def]
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise InputError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
        return cls(**data)


@dataclass
class StudentConfig(_Serialisable):
    """What network to build. ``class_names`` excludes the background, which is always output channel 0."""

    arch: str = "unet"  # "unet" (pure torch, from scratch) | "segformer" | "backbone_unet" (transformers)
    class_names: list[str] = field(default_factory=list)  # filled from the dataset when training
    size: str = "small"  # unet: a UNET_SIZES key; segformer built without weights: "b0".."b5"
    base_channels: int | None = None  # unet: override the size's width (channels of the first level)
    depth: int | None = None  # unet: override the size's number of down-sampling levels
    pretrained: str | None = None  # segformer / backbone_unet: Hugging Face name or local folder to load
    backbone_config: dict[str, Any] | None = None  # backbone_unet without weights: a transformers config dict
    decoder_channels: int = 64  # backbone_unet: width of the U-Net decoder over the backbone features
    hf_config: dict[str, Any] | None = None  # filled at build time: the transformers config, so reloads are offline
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # input normalisation (ImageNet), inside the model
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"student arch {self.arch!r} is unknown; choose one of {list(ARCHS)}")
        self.mean, self.std = tuple(self.mean), tuple(self.std)  # JSON gives lists

    @property
    def num_classes(self) -> int:
        """Output channels: the foreground classes plus background (channel 0)."""
        return len(self.class_names) + 1


@dataclass
class AugmentConfig(_Serialisable):
    """Training augmentations, applied identically to image and mask (colour only to the image)."""

    hflip: float = 0.5  # probability of a horizontal flip; classes named left/right are swapped with it
    scale: tuple[float, float] = (0.75, 1.5)  # random zoom range, then a crop back to the training size
    brightness: float = 0.25  # colour jitter strengths (0 disables each)
    contrast: float = 0.25
    saturation: float = 0.25

    def __post_init__(self) -> None:
        self.scale = tuple(self.scale)


@dataclass
class TrainConfig(_Serialisable):
    """How to train. Deterministic given ``seed`` (same data order, augmentations and initial weights)."""

    image_size: int = 320  # training side: images are letterboxed (long side = this, padded) to a square
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3  # peak AdamW learning rate (use ~6e-5 for pretrained SegFormer / backbones)
    weight_decay: float = 1e-2
    warmup_steps: int = 50  # linear warm-up, then cosine decay to lr * min_lr_ratio at the last step
    min_lr_ratio: float = 0.01
    dice_weight: float = 1.0  # loss = CE + dice_weight * Dice + focal_weight * focal
    focal_weight: float = 0.0  # > 0 adds a focal term (gamma below) against easy-background dominance
    focal_gamma: float = 2.0
    class_weights: bool = True  # CE weights from label frequencies (rare classes count more)
    val_fraction: float = 0.2  # used when the dataset has no validation split; split by seed
    seed: int = 0
    amp: str = "auto"  # "auto": float16 on CUDA, off on CPU | "bf16": bfloat16 autocast | "off"
    max_minutes: float | None = None  # stop early after this much training time (validation still runs)
    max_steps: int | None = None  # stop after this many optimiser steps (tests, quick runs); schedule unchanged
    total_steps: int | None = None  # schedule length and end of training in steps (default: epochs x steps/epoch)
    val_every: int = 1  # validate every N epochs (and at the end); the best by val mIoU is kept
    checkpoint_every: int = 0  # also save a resumable state every N steps (0: only at epoch ends)
    num_workers: int = 0  # DataLoader workers; 0 keeps memory flat and results bit-identical
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        if self.image_size < 32 or self.batch_size < 1 or self.epochs < 1:
            raise InputError("train config: image_size >= 32, batch_size >= 1 and epochs >= 1 are required")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"train config: val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.amp not in ("auto", "bf16", "off"):
            raise InputError(f"train config: amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
