"""Exponential moving average of a student's weights (``TrainConfig(ema=True, ema_decay=0.999)``).

After every optimiser step each floating-point tensor of the averaged copy moves towards the trained one:
``ema = decay_t * ema + (1 - decay_t) * weights``, with ``decay_t = min(decay, (1 + t) / (10 + t))`` at step
``t`` so that early averages are not dominated by the random initial weights. Buffers that are not floating
point (BatchNorm's step counter) are copied. The averaged student is what validation scores and what the
run keeps as ``student.safetensors``; ``train_state.pt`` carries it so a resumed run continues the average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from grounded.distill.students import Student


class Ema:
    """An averaged copy of ``model`` (eval mode, no gradients)."""

    def __init__(self, model: Student, decay: float) -> None:
        self.module, self.decay = copy.deepcopy(model).eval().requires_grad_(False), float(decay)

    @torch.no_grad()
    def update(self, model: Student, step: int) -> None:
        """Move the average towards ``model`` after optimiser step ``step`` (1-based)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for averaged, current in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if averaged.dtype.is_floating_point:
                averaged.lerp_(current.detach(), 1.0 - decay)
            else:
                averaged.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
