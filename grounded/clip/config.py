"""Configuration of grounded.clip as plain dataclasses (no torch import: the CLI reads defaults from here).

``AdapterConfig``: the adapter's shape (:mod:`grounded.clip.adapter`); ``AdapterTrainConfig``: its training
(:mod:`grounded.clip.train`); ``VerifyConfig``: the rules' margins (:mod:`grounded.clip.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

from grounded.errors import InputError


@dataclass(frozen=True)
class AdapterConfig:
    clip_dim: int  # CLIP embedding size (512 for ViT-B/32, 768 for ViT-L/14)
    sam_dim: int  # SAM prompt-embedding size (256 for every released SAM)
    num_tokens: int = 4  # k sparse prompt tokens per text
    hidden_dim: int = 512  # width of the MLP's hidden layers

    def __post_init__(self) -> None:
        for name in ("clip_dim", "sam_dim", "num_tokens", "hidden_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"AdapterConfig.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class AdapterTrainConfig:
    steps: int = 1000  # optimisation steps: the schedule's length
    batch_size: int = 4  # images per step
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.01
    warmup: int = 50  # linear warm-up steps
    min_lr_ratio: float = 0.05  # the cosine decays to lr * this
    focal_weight: float = 20.0  # SAM's 20:1 focal:dice
    dice_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_text_weight: float = 1.0  # loss weight of box + text queries (one per detection)
    text_only_weight: float = 1.0  # loss weight of text-only queries (one per distinct phrase of an image)
    checkpoint_every: int = 50  # steps between last.* / train_state.pt saves (and at the end)
    seed: int = 0  # adapter initialisation and batch order
    max_image_side: int | None = None  # teacher images downscaled to this long side; None: SAM's input size

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr!r}")


@dataclass(frozen=True)
class VerifyConfig:
    relabel_margin: float = 0.3  # p[best other class] - p[detector's class] needed to change the label
    drop_margin: float = 0.5  # p[background] - p[detector's class] needed to drop the detection
    context: float = 0.1  # crop = box widened by this fraction of its width/height on each side
    fill: tuple[int, int, int] = (122, 116, 104)  # RGB of pixels outside the mask (CLIP's mean colour)
    default_templates: tuple[str, ...] = ("a photo of a {}.",)  # for classes without clip_templates
    background_texts: tuple[str, ...] = ("background", "a photo of nothing in particular")  # empty: never drop

    def __post_init__(self) -> None:
        for name in ("relabel_margin", "drop_margin"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"VerifyConfig.{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= self.context <= 1.0:
            raise InputError(f"VerifyConfig.context must be in [0, 1], got {self.context!r}")
