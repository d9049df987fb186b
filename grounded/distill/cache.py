"""Training data decoded once: every item letterboxed to the training size and held in memory.

:meth:`CachedData.build` reads each item of a data :class:`~grounded.distill.data.View` once (image, class
map, instance masks), letterboxes it to ``size`` x ``size`` (image bilinear, maps nearest, padding = 0 for
the image and ``IGNORE_INDEX`` for the maps) and keeps three uint8 arrays:

- ``images`` (N, S, S, 3); ``targets`` (N, S, S): 0 background, c + 1 class c, 255 ignored;
- ``boundaries`` (N, S, S): 1 where an instance touches another within ``boundary_width`` pixels (at the
  training size; :func:`grounded.distill.instances.instance_boundaries`), 0 elsewhere, 255 in the padding.

So no polygon is decoded and no mask rasterised per step: a step only augments cached arrays. A 400-image
dataset at 320 px holds 400 x 320 x 320 x 5 bytes = 205 MB. :class:`CachedSet` serves the items
as tensors for a ``DataLoader``, augmented (:func:`grounded.distill.augment.augment`: flip with left/right
class swap, multi-scale zoom with class-balanced crops, colour jitter) or not (validation).

With the teacher's soft masks (``build(..., soft=True)``, training with ``soft_weight``): ``soft`` (N, K, S, S)
uint8, per class the highest probability of its detections x 255 (:meth:`grounded.label.soft.SoftMasks.
class_maxima`), letterboxed as the image is (bilinear, padding 0), and ``has_soft`` (N,) for the images that
have them (:mod:`grounded.distill.soft`); K x S x S more bytes an image (10 classes at 320 px: 1 MB). Items are
then served with a third tensor, the teacher's distribution (:func:`grounded.distill.soft.soft_targets`), its
maxima augmented with the same geometry as the image.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from grounded.distill.augment import augment_with_soft, flip_map, letterbox, resize_long_side, sample_seed
from grounded.distill.config import IGNORE_INDEX, AugmentConfig
from grounded.distill.instances import instance_boundaries
from grounded.distill.soft import letterbox_soft, soft_masks_of, soft_targets

logger = logging.getLogger(__name__)


def instance_ids(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Instance masks (N, H, W) -> (H, W) int32 ids 1..N (0: none); larger instances painted first, as
    :func:`grounded.utils.masks.rasterize_semantic` paints classes, so both maps agree on overlaps."""
    ids = np.zeros(shape, dtype=np.int32)
    if masks is None or len(masks) == 0:
        return ids
    areas = masks.reshape(len(masks), -1).sum(1)
    for rank, i in enumerate(sorted(range(len(masks)), key=lambda i: (-int(areas[i]), i)), start=1):
        ids[masks[i]] = rank
    return ids


class CachedData:
    """Letterboxed arrays of a view (see the module docstring); ``class_names`` as the view's."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, boundaries: np.ndarray, class_names: list[str],
                 soft: np.ndarray | None = None, has_soft: np.ndarray | None = None) -> None:
        self.images, self.targets, self.boundaries = images, targets, boundaries
        self.class_names = list(class_names)
        self.soft, self.has_soft = soft, has_soft  # (N, K, S, S) uint8 and (N,) bool, or None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    @classmethod
    def build(cls, view, size: int, boundary_width: int = 2, progress: bool = True, desc: str = "cache",  # noqa: ANN001
              soft: bool = False) -> CachedData:
        """Decode and letterbox every item of ``view`` once; ``soft``: the teacher's soft masks too, where the
        view's images have them (:func:`grounded.distill.data.soft_masks_of`)."""
        n, k = len(view), len(view.class_names)
        images = np.zeros((n, size, size, 3), dtype=np.uint8)
        targets = np.full((n, size, size), IGNORE_INDEX, dtype=np.uint8)
        boundaries = np.full((n, size, size), IGNORE_INDEX, dtype=np.uint8)
        maxima = np.zeros((n, k, size, size), dtype=np.uint8) if soft else None
        has_soft = np.zeros(n, dtype=bool) if soft else None
        for i in tqdm(range(n), desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
            picture = view.image(i)
            image, target = letterbox(picture, view.semantic(i), size)
            images[i], targets[i] = image, target
            teacher = soft_masks_of(view, i) if maxima is not None else None
            if teacher is not None and (boxed := letterbox_soft(teacher, picture.shape[:2], size, k)) is not None:
                maxima[i], has_soft[i] = boxed, True
            detections = view.detections(i)
            ids = instance_ids(detections.mask, target.shape if detections.mask is None else detections.mask.shape[1:])
            ids = resize_long_side(ids, size, Image.NEAREST)
            h, w = ids.shape
            boundaries[i, :h, :w] = instance_boundaries(ids, boundary_width)
            boundaries[i][targets[i] == IGNORE_INDEX] = IGNORE_INDEX
        if has_soft is not None:
            logger.info("%s: the teacher's soft masks for %d of %d images", desc, int(has_soft.sum()), n)
        return cls(images, targets, boundaries, view.class_names, maxima, has_soft)

    def pixel_counts(self, num_classes: int) -> np.ndarray:
        """Pixels per class over all items, (num_classes,) int64."""
        counts = np.bincount(self.targets.ravel(), minlength=256)[:num_classes]
        return counts.astype(np.int64)

    def boundary_fraction(self) -> float:
        """Share of labelled pixels that are boundary (the boundary loss weighs positives by its inverse)."""
        valid = self.boundaries != IGNORE_INDEX
        return float(self.boundaries[valid].mean()) if valid.any() else 0.0


def crop_weights(counts: np.ndarray) -> torch.Tensor:
    """Per-class weights for class-balanced crops: ``frequency ** -0.5`` (0 for unseen classes and background)."""
    freq = counts / max(float(counts.sum()), 1.0)
    weights = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    weights[0] = 0.0
    return torch.from_numpy(weights.astype(np.float32))


class CachedSet(Dataset):
    """Items of :class:`CachedData` as (pixels (3, S, S) float in [0, 1], labels (2, S, S) long: class map and
    boundary map[, the teacher's distribution (K + 1, S, S) float when the data has soft masks: :func:`soft_targets`]).
    With ``augment_cfg`` None items are served as cached. Call :meth:`set_epoch` each epoch.

    Determinism: each item's augmentation draws from a generator seeded by ``(seed, epoch, index)``.
    """

    def __init__(self, data: CachedData, augment_cfg: AugmentConfig | None = None, seed: int = 0,
                 balance: torch.Tensor | None = None) -> None:
        self.data, self.augment_cfg, self.seed, self.balance = data, augment_cfg, seed, balance
        self.epoch = 0
        self.lut = flip_map(data.class_names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        pixels = torch.from_numpy(self.data.images[i]).permute(2, 0, 1).float().div_(255.0)
        labels = torch.from_numpy(np.stack([self.data.targets[i], self.data.boundaries[i]]).astype(np.int64))
        soft = None if self.data.soft is None else torch.from_numpy(self.data.soft[i]).float().div_(255.0)
        if self.augment_cfg is not None:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, i))
            pixels, labels, soft = augment_with_soft(pixels, labels, self.augment_cfg, g, self.lut, self.balance, soft)
        if soft is None:
            return pixels, labels
        return pixels, labels, soft_targets(soft, bool(self.data.has_soft[i]))
