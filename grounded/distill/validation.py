"""Scoring a student during and after training, letterboxed at the training size (as it trains).

- :func:`validate`: loss and semantic scores on the validation split, at every validation of a run (this is
  what chooses the kept student);
- :func:`score_test`: the kept student, once, on the test split after training (this chooses nothing);
- :func:`at_loss_scale`: logits and targets brought to the size the loss is taken at.

``grounded evaluate`` (:mod:`~.evaluate`) scores at each image's own resolution instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from grounded.distill.cache import CachedData, CachedSet
from grounded.distill.checkpoint import load_student
from grounded.distill.config import TrainConfig
from grounded.distill.losses import SegmentationLoss
from grounded.distill.metrics import confusion_matrix, semantic_scores
from grounded.distill.splits import View
from grounded.distill.students import Student

logger = logging.getLogger(__name__)


@torch.no_grad()
def validate(student: Student, data: CachedSet, loss_fn: SegmentationLoss, device: torch.device, batch_size: int,
             loss_scale: float = 1.0) -> dict[str, Any]:
    """Loss (at ``loss_scale``, as in training) and semantic scores (at full size) on letterboxed validation items."""
    student.eval()
    num_classes = student.config.num_classes
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    losses = []
    for pixels, target in DataLoader(data, batch_size=batch_size, shuffle=False):
        native = student(pixels.to(device), full_size=False).float()
        losses.append(float(loss_fn(*at_loss_scale(native, target.to(device), loss_scale), num_classes)[0]))
        logits = F.interpolate(native[:, :num_classes], size=pixels.shape[-2:], mode="bilinear", align_corners=False)
        confusion += confusion_matrix(logits.argmax(1).cpu().numpy(), target[:, 0].numpy(), num_classes)
    scores = semantic_scores(confusion, student.config.class_names)
    return {"val_loss": float(np.mean(losses)) if losses else float("nan"), "miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"]}


def at_loss_scale(logits: torch.Tensor, target: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, C, h, w) up-sampled and targets (B, [2,] S, S) sub-sampled (nearest) to ``scale`` x S."""
    step = max(1, round(1 / scale))
    target = target[..., ::step, ::step]
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits, target


def score_test(out: Path, test: View | None, cfg: TrainConfig, device: torch.device, loss_fn: SegmentationLoss,
               progress: bool) -> dict[str, Any] | None:
    """The kept student (``out/student.*``) scored once on the test split, after training, letterboxed at the
    training size as validation is; None without a test split."""
    if test is None or not len(test):
        return None
    student, record = load_student(out)
    data = CachedSet(CachedData.build(test, cfg.image_size, progress=progress, desc="cache test"))
    scores = validate(student.to(device), data, loss_fn, device, cfg.batch_size, cfg.loss_scale)
    logger.info("test split (%d images, scored once): mIoU %.4f of the student kept at step %s", len(test),
                scores["miou"], record["best"]["step"])
    return {"step": record["best"]["step"], "images": len(test), "miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"], "test_loss": scores["val_loss"]}
