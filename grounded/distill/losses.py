"""Segmentation losses against class imbalance: cross-entropy + Dice (+ focal, + Lovász), class weights from counts.

Shapes: ``logits`` (B, C, H, W) with C = K + 1 (channel 0 background); ``target`` (B, H, W) long with values
in [0, C) or ``IGNORE_INDEX`` (255), which takes no part in any term.

- Cross-entropy, optionally weighted per class (:func:`class_weights`).
- Soft Dice (Milletari et al., 2016): ``1 - mean_c (2 |P_c * T_c| + eps) / (|P_c| + |T_c| + eps)`` over the
  classes present in the batch's target or prediction mass, computed on softmax probabilities over the
  whole batch; it rewards overlap of small classes that pixel-wise CE under-weights.
- Focal (Lin et al., 2017): ``mean((1 - p_t) ** gamma * -log p_t)``; it down-weights easy pixels (mostly
  background).
- Lovász-softmax (Berman et al., 2018, "The Lovász-Softmax loss"): per class c present in the target, the
  pixels' errors ``|[y = c] - p_c|`` sorted in decreasing order, dotted with the gradient of the Jaccard loss
  along that order (:func:`lovasz_grad`); the mean over those classes. It is the Lovász extension of
  ``1 - IoU_c``: on one-hot probabilities it equals ``mean_c (1 - IoU_c)``, so thin classes count as in mIoU.
  Over the whole batch (not per image), as the paper's ``per_image=False``.

- Boundary (students with a boundary head: ``logits`` has one more channel, ``target`` is (B, 2, H, W) with
  the class map then the boundary map in {0, 1, 255}): binary cross-entropy, positives weighted by
  ``boundary_pos_weight`` (boundaries are a few per cent of the pixels), ignored pixels left out.

- Soft distillation (``soft_weight``; a ``grounded label --soft-masks`` run): ``soft`` (B, C, H, W), the
  teacher's per-pixel class distribution (:func:`grounded.distill.cache.soft_targets`), and the term is
  ``KL(teacher || student) = sum_c t_c (log t_c - log p_c)``, the mean over pixels that have a teacher
  distribution (an image without soft masks has none) and a label that is not ignored. Temperature 1 (Hinton
  et al., 2015 soften both sides by T > 1): the teacher gives probabilities (stored x 255), not logits, and its
  sigmoid masks are already soft at object edges, which is the knowledge a hard label drops; at T = 1 the
  term is 0 exactly when the student's distribution is the teacher's.

``SegmentationLoss(...)(logits, target[, soft=...])`` returns ``(total, {"ce": ..., "dice": ..., "focal": ..., "lovasz": ...,
"boundary": ..., "soft": ...})``
with the parts as floats for logging.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from grounded.distill.config import IGNORE_INDEX


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft multi-class Dice loss; logits (B, C, H, W), target (B, H, W) -> scalar."""
    num_classes = logits.shape[1]
    valid = target != IGNORE_INDEX
    probs = logits.float().softmax(1) * valid[:, None]
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2).float() * valid[:, None]
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + eps) / (denom + eps)
    return 1.0 - dice[present].mean() if bool(present.any()) else logits.sum() * 0.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss; logits (B, C, H, W), target (B, H, W) -> scalar (mean over non-ignored pixels)."""
    logp = F.log_softmax(logits.float(), 1)
    valid = target != IGNORE_INDEX
    logp_t = logp.gather(1, torch.where(valid, target, 0)[:, None])[:, 0]
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    return loss[valid].mean() if bool(valid.any()) else logits.sum() * 0.0


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Jaccard loss along sorted errors: gt_sorted (..., N) float in {0, 1}, each row with at
    least one 1 -> (..., N), along the last dimension.

    With ``g`` ground-truth pixels and the first i + 1 errors taken as wrong, ``J_i = 1 - (g - tp_i) / (g + fp_i)``
    (``tp_i``, ``fp_i``: how many of them are positives, negatives); the result is ``J_0, J_i - J_{i-1}``."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], -1)


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss over the classes present in ``target``; logits (B, C, H, W), target (B, H, W) -> scalar
    (see the module docstring). Ignored pixels take no part. Cost: one sort of the valid pixels per class present
    (about 20 ms per 200 k pixels on one CPU thread)."""
    num_classes = logits.shape[1]
    labels = target.reshape(-1)
    valid = labels != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    probs = logits.float().softmax(1).permute(0, 2, 3, 1).reshape(-1, num_classes)[valid]
    labels = labels[valid]
    present = torch.unique(labels)
    fg = (labels[None] == present[:, None]).float()  # (P, N): one row per class present
    errors_sorted, order = torch.sort((fg - probs[:, present].t()).abs(), dim=1, descending=True)
    return (errors_sorted * lovasz_grad(fg.gather(1, order))).sum(1).mean()


def boundary_loss(logit: torch.Tensor, target: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Weighted binary cross-entropy; logit (B, H, W), target (B, H, W) in {0, 1, IGNORE_INDEX} -> scalar."""
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return logit.sum() * 0.0
    weight = torch.tensor(pos_weight, device=logit.device)
    return F.binary_cross_entropy_with_logits(logit.float()[valid], target[valid].float(), pos_weight=weight)


def soft_distillation(logits: torch.Tensor, soft: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(teacher || student)`` per pixel at temperature 1; logits (B, C, H, W), soft (B, C, H, W) float (each
    pixel a distribution, or all 0 where there is no teacher), target (B, H, W) (``IGNORE_INDEX`` pixels left
    out) -> scalar, the mean over the pixels that take part."""
    valid = soft.sum(1) > 0.5
    if target is not None:
        valid &= target != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    logp = F.log_softmax(logits.float(), 1)
    kl = (torch.xlogy(soft, soft) - soft * logp).sum(1)
    return kl[valid].mean()


def class_weights(counts: np.ndarray, c: float = 1.2) -> np.ndarray:
    """Pixel counts per class (C,) -> CE weights (C,), ``1 / ln(c + frequency)`` (ENet), mean 1 over classes seen.

    ENet's ``c = 1.02`` gave car_parts' background (68 % of pixels) 1/25 of a rare class's weight; with Dice
    already favouring small classes, students then painted foreground everywhere (background IoU 0-53 %).
    The default ``c = 1.2`` keeps the ratio near 3.4x there (background 0.32, rare parts 1.1). Classes never
    seen get weight 1 (they take no part in the loss).
    """
    counts = np.asarray(counts, dtype=np.float64)
    freq = counts / max(counts.sum(), 1.0)
    weights = 1.0 / np.log(c + freq)
    seen = counts > 0
    weights[seen] /= weights[seen].mean() if seen.any() else 1.0
    weights[~seen] = 1.0
    return weights.astype(np.float32)


class SegmentationLoss(nn.Module):
    """``CE(weight) + dice_weight * Dice + focal_weight * Focal + lovasz_weight * Lovász (+ soft_weight * KL to the
    teacher)``; see the module docstring."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        dice_weight: float = 1.0,
        focal_weight: float = 0.0,
        focal_gamma: float = 2.0,
        boundary_weight: float = 1.0,
        boundary_pos_weight: float = 1.0,
        lovasz_weight: float = 0.0,
        soft_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else None)
        self.dice_weight, self.focal_weight, self.focal_gamma = dice_weight, focal_weight, focal_gamma
        self.boundary_weight, self.boundary_pos_weight = boundary_weight, boundary_pos_weight
        self.lovasz_weight, self.soft_weight = lovasz_weight, soft_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, num_classes: int | None = None,
                soft: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """``num_classes``: channels that are classes (K + 1); a further channel is the boundary head's.
        ``soft``: the teacher's distribution (B, K + 1, H, W) for the ``soft_weight`` term (None: no term)."""
        boundary_parts: tuple[torch.Tensor, torch.Tensor] | None = None
        if target.dim() == 4:  # (B, 2, H, W): class map, boundary map
            target, boundary_target = target[:, 0], target[:, 1]
            if num_classes is not None and logits.shape[1] > num_classes:
                boundary_parts = (logits[:, num_classes], boundary_target)
        if num_classes is not None:
            logits = logits[:, :num_classes]
        if not bool((target != IGNORE_INDEX).any()):  # nothing to learn from: a zero that keeps the graph
            ce = logits.sum() * 0.0
        else:
            ce = F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=IGNORE_INDEX)
        total, parts = ce, {"ce": float(ce.detach())}
        if self.dice_weight:
            dice = dice_loss(logits, target)
            total = total + self.dice_weight * dice
            parts["dice"] = float(dice.detach())
        if self.focal_weight:
            focal = focal_loss(logits, target, self.focal_gamma)
            total = total + self.focal_weight * focal
            parts["focal"] = float(focal.detach())
        if self.lovasz_weight:
            lovasz = lovasz_softmax(logits, target)
            total = total + self.lovasz_weight * lovasz
            parts["lovasz"] = float(lovasz.detach())
        if soft is not None and self.soft_weight:
            distilled = soft_distillation(logits, soft, target)
            total = total + self.soft_weight * distilled
            parts["soft"] = float(distilled.detach())
        if boundary_parts is not None and self.boundary_weight:
            boundary = boundary_loss(*boundary_parts, pos_weight=self.boundary_pos_weight)
            total = total + self.boundary_weight * boundary
            parts["boundary"] = float(boundary.detach())
        return total, parts
