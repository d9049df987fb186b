"""Segmentation metrics: confusion-matrix IoU and pycocotools mask AP.

Semantic (per pixel; ``IGNORE_INDEX`` pixels are skipped):

- ``confusion[t, p]``: pixels of true class t predicted as p, (C, C) with C = K + 1 (0 = background);
- IoU of class c: ``TP / (TP + FP + FN)`` = ``conf[c, c] / (row_c + col_c - conf[c, c])``; ``None`` when
  the class appears neither in the labels nor the predictions (union 0);
- mIoU: the mean IoU over the **foreground** classes whose union is non-zero (background reported apart);
- pixel accuracy: ``trace / total`` over all non-ignored pixels;
- a confidence interval for mIoU (:func:`bootstrap_miou`): images resampled with replacement (seeded), the
  summed confusion of each resample scored as above, the percentiles of those mIoUs.

Instance (mask AP): :class:`MaskAP` collects ground truth and predictions image by image as COCO RLE
(compact; no masks are held) and runs ``pycocotools.cocoeval.COCOeval(iouType="segm")``, which matches by
**mask** IoU (supervision's ``MetricTarget.MASKS`` matches boxes). AP is COCO's AP@[.50:.95], AP50 at IoU 0.5;
per-class AP averages COCO's precision array over IoU thresholds and recall points, area "all", 100 dets.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import supervision as sv

from grounded.distill.config import IGNORE_INDEX
from grounded.utils.masks import mask_to_rle


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """pred, target: integer class maps of one shape -> (C, C) int64, rows true, columns predicted."""
    pred, target = np.asarray(pred).ravel().astype(np.int64), np.asarray(target).ravel().astype(np.int64)
    keep = (target != IGNORE_INDEX) & (target < num_classes)
    index = target[keep] * num_classes + np.clip(pred[keep], 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def semantic_scores(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU, mIoU, background IoU and pixel accuracy from a (K + 1, K + 1) confusion matrix."""
    confusion = confusion.astype(np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    iou = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(len(confusion))]
    fg = [v for v in iou[1:] if v is not None]
    total = confusion.sum()
    return {
        "per_class_iou": {name: iou[c + 1] for c, name in enumerate(class_names)},
        "miou": float(np.mean(fg)) if fg else 0.0,
        "background_iou": iou[0],
        "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
    }


def mean_iou(confusion: np.ndarray) -> np.ndarray:
    """mIoU of one (C, C) or of a stack (..., C, C) of confusion matrices, by the rule of :func:`semantic_scores`."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)[..., 1:]
    union = (confusion.sum(-2) + confusion.sum(-1))[..., 1:] - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=present)
    count = present.sum(-1)
    return np.where(count > 0, iou.sum(-1) / np.maximum(count, 1), 0.0)


def bootstrap_miou(confusions: np.ndarray, rounds: int = 1000, level: float = 0.95, seed: int = 0
                   ) -> tuple[float, float]:
    """A percentile-bootstrap interval for the mIoU of a set of images, from their (N, C, C) confusion matrices.

    Each of ``rounds`` resamples draws N images with replacement (numpy, seeded); returns the (1 - level) / 2
    and (1 + level) / 2 quantiles of the resamples' mIoU. With one image the interval is that image's mIoU."""
    confusions = np.asarray(confusions, dtype=np.float64)
    n = len(confusions)
    if n == 0:
        return 0.0, 0.0
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=rounds)  # (rounds, N)
    resampled = (counts @ confusions.reshape(n, -1)).reshape(rounds, *confusions.shape[1:])
    low, high = np.quantile(mean_iou(resampled), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


class MaskAP:
    """Streaming COCO mask AP: ``add`` one image at a time, then ``compute``."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.images: list[dict[str, Any]] = []
        self.gt: list[dict[str, Any]] = []
        self.dt: list[dict[str, Any]] = []

    def add(self, truth: sv.Detections, predicted: sv.Detections, shape: tuple[int, int]) -> None:
        """Ground truth (masks, class_id, optional data["iscrowd"]) and predictions (+ confidence) of one image."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "height": int(shape[0]), "width": int(shape[1])})
        crowd = truth.data.get("iscrowd") if truth.data else None
        for k in range(len(truth)):
            rle = mask_to_rle(truth.mask[k])
            x1, y1, x2, y2 = (float(v) for v in truth.xyxy[k])
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": int(truth.class_id[k]) + 1,
                            "segmentation": rle, "area": float(truth.mask[k].sum()), "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "iscrowd": int(crowd[k]) if crowd is not None else 0})
        scores = predicted.confidence if predicted.confidence is not None else np.ones(len(predicted))
        for k in range(len(predicted)):
            self.dt.append({"image_id": image_id, "category_id": int(predicted.class_id[k]) + 1,
                            "segmentation": mask_to_rle(predicted.mask[k]), "score": float(scores[k])})

    def compute(self) -> dict[str, Any]:
        """{"ap", "ap50", "ap75", "per_class_ap": {name: AP or None without ground truth}}."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        empty = {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "per_class_ap": {n: None for n in self.class_names}}
        if not self.gt:
            return empty
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt = COCO()
            gt.dataset = {"images": self.images, "annotations": self.gt,
                          "categories": [{"id": c + 1, "name": n} for c, n in enumerate(self.class_names)]}
            gt.createIndex()
            if not self.dt:
                present = {a["category_id"] for a in self.gt}
                return {**empty, "per_class_ap": {n: (0.0 if c + 1 in present else None) for c, n in enumerate(self.class_names)}}
            evaluator = COCOeval(gt, gt.loadRes(self.dt), iouType="segm")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K): area all, maxDets 100
        per_class = {}
        for c, name in enumerate(self.class_names):
            values = precision[:, :, c]
            per_class[name] = float(values[values > -1].mean()) if (values > -1).any() else None
        stats = [max(float(s), 0.0) for s in evaluator.stats[:3]]
        return {"ap": stats[0], "ap50": stats[1], "ap75": stats[2], "per_class_ap": per_class}
