"""A processor + model pair from transformers, loaded by Hugging Face name or local folder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from grounded.models.loading import load_pretrained
from grounded.utils.timing import StageTimer


class PretrainedPair:
    """Holds ``model`` (eval mode) and its ``processor``; subclasses name the classes and the role. The model
    types a backend accepts are its rows of the registry's table (grounded/models/registry.py), declared there once."""

    role: ClassVar[str]  # "detector", "segmenter": names the CLI flag in load errors
    compile_modules: ClassVar[tuple[str, ...]] = ()  # submodules of ``model`` that ``compile=True`` compiles
    requires: ClassVar[tuple[str, ...]] = ()  # optional packages it imports (e.g. torchvision): the extra's

    def __init__(self, model: nn.Module, processor: Any, name: str = "") -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.autocast: torch.dtype | None = None  # forward passes under torch.autocast to this (acceleration.py)
        self.timer = StageTimer()  # stage seconds; a Predictor shares its own timer with its backends

    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        """(processor class, model class), imported lazily."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, name: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
        from grounded.models.registry import types_served_by

        processor_cls, model_cls = cls.classes()
        processor = load_pretrained(processor_cls, name, cls.role, local_files_only=local_files_only)
        model = load_pretrained(model_cls, name, cls.role, local_files_only=local_files_only,
                                model_types=types_served_by(cls) or None)
        return cls(model.to(device=device, dtype=dtype), processor, name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype
