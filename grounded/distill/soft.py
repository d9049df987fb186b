"""The teacher's soft masks as training targets: from a label run's files to the distribution a student learns.

A ``grounded label --soft-masks`` run stores, per image, each detection's mask probability at 256 px
(:mod:`grounded.label.soft`) and names the folder in ``run.json``. Training with ``soft_weight > 0``:

1. :class:`SoftFiles` finds an image's file by its path relative to the images root (the COCO ``file_name``
   of the run's export). An image a person reviewed (``OUT/reviews/``) learns from its hard labels only: the
   teacher's probabilities no longer describe it; so does an image whose file is missing or unreadable (warned);
2. :func:`letterbox_soft` reduces them to per-class maxima (K, S, S) uint8 (class c: the highest probability of
   c's detections), letterboxed exactly as the image is (:func:`grounded.distill.augment.long_side_size`,
   bilinear, padding 0), for :class:`grounded.distill.cache.CachedData`;
3. after augmentation (the same geometry as the image: :func:`grounded.distill.augment.augment_with_soft`),
   :func:`soft_targets` makes the K + 1 channel distribution: background 1 - the highest class probability,
   each pixel normalised; the loss term is :func:`grounded.distill.losses.soft_distillation`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from grounded.distill.augment import long_side_size
from grounded.errors import InputError
from grounded.label.reviews import review_path
from grounded.label.soft import SoftMasks, read_soft, soft_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SoftFiles:
    """The soft files of the label run ``run``, in its ``folder``."""

    run: Path
    folder: str

    @classmethod
    def of_run(cls, run: Path, manifest: dict[str, Any]) -> SoftFiles | None:
        """The run's soft files when its ``run.json`` (``manifest``) names them, else None."""
        entry = manifest.get("soft_masks")
        return cls(Path(run), str(entry["folder"])) if isinstance(entry, dict) and entry.get("folder") else None

    def __call__(self, relative: str) -> SoftMasks | None:
        """The soft masks of the image at ``relative`` (below the images root), or None (see the module docstring)."""
        path = soft_path(self.run, relative, self.folder)
        if not path.is_file() or review_path(self.run, relative).is_file():
            return None
        try:
            return read_soft(path)
        except InputError as exc:
            logger.warning("%s: this image learns from its hard labels only", exc)
            return None


def soft_masks_of(view: Any, i: int) -> SoftMasks | None:
    """The teacher's soft masks of item ``i`` of a :class:`~grounded.distill.splits.View` (None: none)."""
    soft = getattr(view.source, "soft", None)
    return None if soft is None else soft(view.indices[i])


def letterbox_soft(teacher: SoftMasks, image_hw: tuple[int, int], size: int, num_classes: int) -> np.ndarray | None:
    """Soft masks of an (H, W) image -> per-class maxima letterboxed to (K, size, size) uint8 (x 255), aligned
    with the letterboxed image; None (warned) when the file is for an image of another size."""
    if tuple(teacher.image_hw) != tuple(image_hw):
        logger.warning("soft masks for a %s image given for one of %s: left out", teacher.image_hw, image_hw)
        return None
    h, w = long_side_size(image_hw, size)
    out = np.zeros((num_classes, size, size), dtype=np.uint8)
    for k, maxima in enumerate(teacher.class_maxima(num_classes)):
        if maxima.any():
            out[k, :h, :w] = np.asarray(Image.fromarray(maxima).resize((w, h), Image.BILINEAR))
    return out


def soft_targets(maxima: torch.Tensor, present: bool = True) -> torch.Tensor:
    """Class maxima (K, H, W) float in [0, 1] -> the teacher's distribution (K + 1, H, W): channel 0 background
    = 1 - the highest class probability, then the classes, each pixel normalised to sum 1; all 0 when the image
    has no soft masks (``present`` False), which the distillation term leaves out."""
    if not present:
        return maxima.new_zeros((len(maxima) + 1, *maxima.shape[1:]))
    highest = maxima.amax(0, keepdim=True) if len(maxima) else maxima.new_zeros((1, *maxima.shape[1:]))
    stacked = torch.cat([1.0 - highest, maxima])
    return stacked / stacked.sum(0, keepdim=True).clamp_min(1e-6)
