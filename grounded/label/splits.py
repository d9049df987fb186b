"""Seeded train/val(/test) split of a run's images.

The split depends only on the sorted list of image paths, the fractions and the seed, never on the order
images were labelled in or on an interruption: the sorted paths are permuted by ``numpy``'s
``default_rng(seed)`` and cut into exact counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grounded.errors import InputError

SPLIT_NAMES = ("train", "val", "test")


def parse_split(text: str | Sequence[float]) -> dict[str, float]:
    """``"0.8,0.2"`` or ``"0.7,0.2,0.1"`` (or a sequence) -> ``{"train": .., "val": .., ["test": ..]}``.

    Fractions must be non-negative and sum to 1 (within 1e-6); train must be positive.
    """
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise InputError(f"--split {text!r}: expected fractions like '0.8,0.2' or '0.7,0.2,0.1'") from None
    else:
        values = [float(v) for v in text]
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6 or values[0] <= 0:
        raise InputError(
            f"split {values}: expected 1 to 3 non-negative fractions (train, val, test) that sum to 1, "
            "train > 0, e.g. '0.8,0.2'"
        )
    return {name: value for name, value in zip(SPLIT_NAMES, values, strict=False) if name == "train" or value > 0}


def assign_splits(keys: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Map every key to a split name; exact counts (val and test get at least one image when asked for
    and there are enough images), train takes the rest."""
    ordered = sorted(keys)
    n = len(ordered)
    order = np.random.default_rng(seed).permutation(n)
    counts = {}
    for name in ("val", "test"):
        if fractions.get(name, 0) > 0:
            counts[name] = max(1, int(round(n * fractions[name]))) if n > len(fractions) - 1 else 0
    assignment: dict[str, str] = {}
    start = 0
    for name in ("val", "test"):
        for i in order[start : start + counts.get(name, 0)]:
            assignment[ordered[i]] = name
        start += counts.get(name, 0)
    for i in order[start:]:
        assignment[ordered[i]] = "train"
    return assignment
