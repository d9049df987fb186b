"""Losses and metrics against hand-computed cases (IoU from a confusion matrix, mask AP with pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
import torch

from grounded.distill.losses import SegmentationLoss, class_weights, dice_loss, focal_loss
from grounded.distill.metrics import MaskAP, confusion_matrix, semantic_scores


def box_mask(y0, y1, x0, x1, size=20) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def dets(masks, classes, scores=None) -> sv.Detections:
    masks = np.stack(masks) if masks else np.zeros((0, 20, 20), dtype=bool)
    return sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32) if len(masks) else np.zeros((0, 4)),
                         mask=masks, class_id=np.asarray(classes, dtype=int),
                         confidence=None if scores is None else np.asarray(scores, dtype=np.float32))


def test_iou_and_pixel_accuracy_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 1, 2, 0]])
    conf = confusion_matrix(pred, truth, 3)
    assert conf.sum() == 10  # the two ignored pixels are left out
    scores = semantic_scores(conf, ["a", "b"])
    # class a (1): TP 3, FP 2 (a bg pixel and a class-b pixel), FN 1 -> 3/6; class b (2): TP 1, FP 0, FN 1 -> 1/2
    assert scores["per_class_iou"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    assert scores["miou"] == pytest.approx(0.5)
    assert scores["background_iou"] == pytest.approx(3 / 5)  # TP 3, FP 1, FN 1
    assert scores["pixel_accuracy"] == pytest.approx(7 / 10)


def test_class_absent_everywhere_is_none_and_left_out_of_miou():
    scores = semantic_scores(confusion_matrix(np.array([0, 1]), np.array([0, 1]), 3), ["a", "b"])
    assert scores["per_class_iou"]["b"] is None and scores["miou"] == 1.0


A = box_mask(2, 10, 2, 10)  # 64 px
A_SHIFT = box_mask(2, 10, 2, 8)  # 48 px inside A: IoU 0.75
B = box_mask(12, 18, 12, 18)


@pytest.mark.parametrize(
    "truth, predicted, ap, ap50",
    [
        (dets([A], [0]), dets([A], [0], [0.9]), 1.0, 1.0),  # perfect
        (dets([A], [0]), dets([A_SHIFT], [0], [0.9]), 0.6, 1.0),  # IoU 0.75 passes 6 of the 10 thresholds
        (dets([A], [0]), dets([A], [1], [0.9]), 0.0, 0.0),  # right mask, wrong class
        (dets([A], [0]), dets([], []), 0.0, 0.0),  # nothing predicted
        # a confident false positive ranked above the true match: precision 0.5 at recall 1 -> AP 0.5
        (dets([A], [0]), dets([B, A], [0, 0], [0.9, 0.8]), 0.5, 0.5),
        # box IoU of these would be 1.0, mask IoU is 0.5: AP50 1 (>= 0.5), AP over thresholds 0.1
        (dets([box_mask(0, 10, 0, 10)], [0]), dets([box_mask(0, 10, 0, 10) & (np.arange(20) % 2 == 0)[None, :]], [0], [1.0]), 0.1, 1.0),
    ],
)
def test_mask_ap_by_hand(truth, predicted, ap, ap50):
    metric = MaskAP(["a", "b"])
    metric.add(truth, predicted, (20, 20))
    result = metric.compute()
    assert result["ap"] == pytest.approx(ap, abs=1e-6) and result["ap50"] == pytest.approx(ap50, abs=1e-6)


def test_dice_is_zero_for_a_perfect_prediction_and_ignores_255():
    target = torch.tensor([[[0, 1], [2, 255]]])
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 1], [2, 0]]]), 3).permute(0, 3, 1, 2).float() * 50
    assert float(dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-4)
    assert float(focal_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)
    wrong = logits.roll(1, dims=1)
    # every class: 1 pixel, all wrong: dice = (0 + eps) / (1 + 1 + eps) = 1/3 with eps 1 -> loss 2/3
    assert float(dice_loss(wrong, target)) == pytest.approx(2 / 3, abs=1e-4)


def test_focal_is_below_cross_entropy_and_loss_adds_terms():
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert float(focal_loss(logits, target)) < float(ce)
    total, parts = SegmentationLoss(dice_weight=1.0, focal_weight=0.5)(logits, target)
    assert float(total) == pytest.approx(parts["ce"] + parts["dice"] + 0.5 * parts["focal"], rel=1e-5)
    nothing, _ = SegmentationLoss()(logits, torch.full((2, 8, 8), 255))
    assert float(nothing) == 0.0


def test_class_weights_favour_rare_classes():
    weights = class_weights(np.array([900, 90, 10, 0]))
    assert weights[2] > weights[1] > weights[0] and weights[3] == 1.0
    assert weights[:3].mean() == pytest.approx(1.0)
