"""Configuration of students and of their training, as plain dataclasses.

Every field has a default that works; the comments say what to change and why. Both classes round-trip
through JSON (``to_dict`` / ``from_dict``) so a run folder records exactly what was trained::

    StudentConfig()                                     # FastSeg small, from scratch: the real-time default
    StudentConfig(arch="unet", size="tiny")             # the full-resolution U-Net
    StudentConfig(arch="segformer", pretrained="nvidia/mit-b0")
    StudentConfig(arch="mobilenet_deeplab", pretrained="google/deeplabv3_mobilenet_v2_1.0_513")
    StudentConfig(arch="mobilevit", pretrained="apple/mobilevitv2-1.0-imagenet1k-256")
    StudentConfig(arch="backbone_unet", pretrained="microsoft/resnet-18")
    TrainConfig(budget_minutes=30)                      # plan the run to fit 30 minutes (the default)
    TrainConfig(epochs=30, image_size=320, seed=0)      # or count in epochs / steps
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from grounded.errors import InputError

ARCHS = ("fast", "unet", "segformer", "mobilenet_deeplab", "mobilevit", "backbone_unet")
DEFAULT_SIZES = {"fast": "small", "unet": "small", "segformer": "b0"}  # other archs: a width multiplier, "1.0"
AMP_MODES = ("auto", "bf16", "off")  # TrainConfig.amp
DEFAULT_BUDGET_MINUTES = 30.0  # a run given neither a budget, epochs nor steps plans itself to fit this
IGNORE_INDEX = 255  # target value of pixels that take no part in the loss or the metrics (padding, "don't care")

# U-Net sizes: (base_channels, depth). Channels double at every level; the input size must be a multiple
# of 2**depth. "tiny" runs in real time on a laptop CPU at 256 px, "large" is the accurate end.
UNET_SIZES: dict[str, tuple[int, int]] = {"tiny": (8, 3), "small": (16, 4), "base": (32, 4), "large": (64, 5)}

# FastSeg sizes: widths (stem, 1/4, 1/8, 1/16, 1/32), inverted residual blocks at 1/8, 1/16, 1/32, decoder
# width. "small" (the default) runs a 512 px image in well under 30 ms on one CPU thread through ONNX Runtime.
FAST_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"widths": (16, 24, 32, 64, 96), "blocks": (1, 2, 2), "decoder": 32},
    "small": {"widths": (16, 32, 48, 96, 160), "blocks": (2, 3, 3), "decoder": 64},
    "base": {"widths": (24, 32, 64, 128, 256), "blocks": (3, 4, 4), "decoder": 96},
}

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

    arch: str = "fast"  # pure torch, from scratch: "fast" (FastSeg) | "unet"; through transformers: "segformer" |
    #                     "mobilenet_deeplab" (DeepLabV3 + MobileNetV2) | "mobilevit" (MobileViTV2) | "backbone_unet"
    class_names: list[str] = field(default_factory=list)  # filled from the dataset when training
    size: str | None = None  # fast: a FAST_SIZES key; unet: a UNET_SIZES key; segformer built without weights:
    #                          "b0".."b5"; mobilenet_deeplab / mobilevit: a width multiplier; None: DEFAULT_SIZES
    boundary_head: bool = True  # one more output channel: instance boundaries, to split touching objects of a class
    base_channels: int | None = None  # unet: override the size's width (channels of the first level)
    depth: int | None = None  # unet: override the size's number of down-sampling levels
    pretrained: str | None = None  # segformer / backbone_unet: Hugging Face name or local folder to load
    tta_flip: bool = False  # inference: average with the mirrored image's logits, left/right classes swapped (2x cost)
    backbone_config: dict[str, Any] | None = None  # backbone_unet without weights: a transformers config dict
    decoder_channels: int = 64  # backbone_unet: width of the U-Net decoder over the backbone features
    hf_config: dict[str, Any] | None = None  # filled at build time: the transformers config, so reloads are offline
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # input normalisation (ImageNet), inside the model
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        # records written before the boundary head existed describe students without it
        return super().from_dict({"boundary_head": False, **data})

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise InputError(f"student arch {self.arch!r} is unknown; choose one of {list(ARCHS)}")
        if self.size is None:
            self.size = DEFAULT_SIZES.get(self.arch, "1.0")
        self.mean, self.std = tuple(self.mean), tuple(self.std)  # JSON gives lists

    @property
    def num_classes(self) -> int:
        """Output channels: the foreground classes plus background (channel 0)."""
        return len(self.class_names) + 1

    @property
    def num_outputs(self) -> int:
        """Output channels of the network: the classes, then the boundary channel when there is one."""
        return self.num_classes + int(self.boundary_head)


@dataclass
class AugmentConfig(_Serialisable):
    """Training augmentations, applied identically to image and mask (colour only to the image)."""

    hflip: float = 0.5  # probability of a horizontal flip; classes named left/right are swapped with it
    scale: tuple[float, float] = (0.6, 1.6)  # multi-scale training: random zoom, then a crop back to the training size
    balanced_crops: bool = True  # zoomed-in crops centre on a pixel of a class drawn against its frequency
    brightness: float = 0.25  # colour jitter strengths (0 disables each)
    contrast: float = 0.25
    saturation: float = 0.25
    rotate: float = 0.0  # small rotations: an angle drawn in [-rotate, rotate] degrees, e.g. 10 (0 disables);
    #                      uncovered corners are padded (image 0, labels ignored)
    blur: float = 0.0  # probability of a Gaussian blur (0 disables), its sigma drawn from blur_sigma
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # pixels at the training size
    jpeg: float = 0.0  # probability of a JPEG round trip, compression noise (0 disables), quality from jpeg_quality
    jpeg_quality: tuple[int, int] = (30, 90)  # Pillow's 1-95 scale, both ends included

    def __post_init__(self) -> None:
        self.scale, self.blur_sigma, self.jpeg_quality = tuple(self.scale), tuple(self.blur_sigma), tuple(self.jpeg_quality)
        for name in ("hflip", "blur", "jpeg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"augment config: {name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.rotate <= 180.0:
            raise InputError(f"augment config: rotate is a largest angle in degrees, 0-180 (e.g. 10), got {self.rotate}")
        ranges = {"scale": (self.scale, 1e-3, 100.0), "blur_sigma": (self.blur_sigma, 0.0, 100.0),
                  "jpeg_quality": (self.jpeg_quality, 1, 95)}
        for name, (pair, low, high) in ranges.items():
            if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
                raise InputError(f"augment config: {name} is a (low, high) range within [{low}, {high}], got {pair}")


@dataclass
class TrainConfig(_Serialisable):
    """How to train. Deterministic given ``seed`` (same data order, augmentations and initial weights)."""

    image_size: int = 320  # training side: images are letterboxed (long side = this, padded) to a square
    budget_minutes: float | None = None  # plan the run to fit this wall time (see grounded.distill.budget)
    epochs: int | None = None  # or count in epochs; with neither (nor max_steps): budget DEFAULT_BUDGET_MINUTES
    batch_size: int = 8
    lr: float = 1e-3  # peak AdamW learning rate (use ~6e-5 for pretrained SegFormer / backbones)
    weight_decay: float = 1e-2
    warmup_steps: int = 50  # linear warm-up, then cosine decay to lr * min_lr_ratio at the last step
    min_lr_ratio: float = 0.01
    dice_weight: float = 1.0  # loss = CE + dice_weight * Dice + focal_weight * focal (+ lovasz_weight * Lovász)
    focal_weight: float = 0.0  # > 0 adds a focal term (gamma below) against easy-background dominance
    focal_gamma: float = 2.0
    lovasz_weight: float = 0.0  # > 0 adds lovasz_weight * Lovász-softmax (Berman et al., 2018): a convex surrogate
    #                             of per-class IoU, so a thin class's errors count as they do in its IoU
    boundary_weight: float = 1.0  # weight of the boundary head's loss (students with boundary_head)
    class_weights: bool = True  # CE weights from label frequencies (rare classes count more)
    val_fraction: float = 0.2  # used when the dataset has no validation split; split by seed
    test_fraction: float = 0.15  # held out first, by seed, when the dataset has no test split; 0: none. Nothing
    #                              chooses with it (not the checkpoint, not the budget): the honest estimate
    folds: int | str = 0  # score by k-fold instead of the test split: k >= 2 students, each trained on k - 1 folds
    #   of the non-validation images and scored on the last, then the kept student on all of them (a budget is
    #   shared k + 1 ways); "auto": k = 5 when the seeded test split would hold < 10 images; 0: off (splits.py)
    seed: int = 0
    amp: str = "auto"  # AMP_MODES: "auto": float16 on CUDA, off on CPU | "bf16": bfloat16 autocast | "off"
    loss_scale: float = 0.5  # the loss is taken at this fraction of the training size (logits up-sampled from the
    #                          network's stride, targets sub-sampled): 0.5 halved the CPU time of a FastSeg step
    channels_last: bool = False  # NHWC memory format (measured no faster for FastSeg on the CPUs here)
    max_minutes: float | None = None  # older name of budget_minutes (read from old run records)
    max_steps: int | None = None  # stop after this many steps; alone, it is also the schedule's length
    total_steps: int | None = None  # schedule length and end of training in steps (overrides the rest)
    val_every: int = 1  # validate every N epochs (and at the end); the best by val mIoU is kept; budgets set it
    ema: bool = False  # keep an exponential moving average of the weights; validate and keep the averaged student
    ema_decay: float = 0.999  # its decay per step (ramped up from ~0.1 over the first steps)
    checkpoint_every: int = 0  # also save a resumable state every N steps (0: only at validations / epoch ends)
    num_workers: int = -1  # DataLoader workers; -1: 2 on CUDA, 0 on CPU (the cached data costs ~nothing there)
    device: str | None = "auto"  # "auto" (or None): CUDA when available, else CPU | "cpu" | "cuda" | "cuda:1" ...
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    soft_weight: float = 0.0  # > 0 adds soft_weight * KL(teacher || student) per pixel at temperature 1 (Hinton et
    #   al., 2015): the teacher's K + 1 class distribution from the soft masks of a `grounded label --soft-masks`
    #   run (class c: max probability of its detections, background: 1 - max of all, normalised); images without
    #   soft masks learn from the hard labels only, which stay the supervision either way (grounded.distill.losses)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        # records written before the test split existed kept none: a resumed or re-scored run keeps its split
        return super().from_dict({"test_fraction": 0.0, **data})

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        if self.budget_minutes is None and self.max_minutes is not None:
            self.budget_minutes = self.max_minutes
        self.max_minutes = None
        if self.image_size < 32 or self.batch_size < 1 or (self.epochs is not None and self.epochs < 1):
            raise InputError("train config: image_size >= 32, batch_size >= 1 and epochs >= 1 are required")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise InputError(f"train config: budget_minutes must be > 0, got {self.budget_minutes}")
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"train config: val_fraction must be in (0, 1), got {self.val_fraction}")
        if isinstance(self.folds, str) and self.folds.strip().isdigit():  # the command line gives text
            self.folds = int(self.folds)
        if self.folds != "auto" and (not isinstance(self.folds, int) or self.folds < 0 or self.folds == 1):
            raise InputError(f"train config: folds is 0 (off), a number of folds >= 2 or 'auto', got {self.folds!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise InputError(f"train config: test_fraction must be in [0, 1) (0: no test split), got {self.test_fraction}")
        for name in ("dice_weight", "focal_weight", "lovasz_weight", "boundary_weight", "soft_weight"):
            if getattr(self, name) < 0:
                raise InputError(f"train config: {name} must be >= 0 (0 leaves the term out), got {getattr(self, name)}")
        if not 0.0 < self.ema_decay < 1.0:
            raise InputError(f"train config: ema_decay must be in (0, 1), e.g. 0.999, got {self.ema_decay}")
        if self.amp not in AMP_MODES:
            raise InputError(f"train config: amp must be one of {AMP_MODES}, got {self.amp!r}")
