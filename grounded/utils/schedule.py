"""The learning-rate schedule every trainer of the project uses: linear warm-up, then cosine decay.

``warmup_cosine(step, warmup, total, min_ratio)`` is the multiplier of the peak learning rate at optimiser
step ``step`` (0-based): ``(step + 1) / warmup`` during the first ``warmup`` steps, then a half cosine from 1
down to ``min_ratio``, reached exactly at ``step == total`` and held after it.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
