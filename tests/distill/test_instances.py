"""Instances from class maps, and augmentations that move image and mask together."""

from __future__ import annotations

import numpy as np
import torch

from grounded.distill.augment import augment, flip_map, letterbox
from grounded.distill.config import IGNORE_INDEX, AugmentConfig
from grounded.distill.instances import label_map_to_detections, probs_to_detections


def test_connected_components_become_instances_with_boxes_and_mean_confidence():
    label = np.zeros((10, 12), dtype=np.int32)
    label[1:3, 1:4] = 1  # class 0, 6 px
    label[6:9, 8:11] = 1  # class 0 again, separate: 9 px
    label[5, 0] = 2  # class 1, 1 px: below min_area
    probs = np.zeros((3, 10, 12), dtype=np.float32)
    probs[1][label == 1] = 0.8
    probs[1][6:9, 8:11] = 0.6
    dets = label_map_to_detections(label, ["a", "b"], probs, min_area=2)
    assert len(dets) == 2 and dets.class_id.tolist() == [0, 0]
    assert dets.confidence.tolist() == [np.float32(0.8), np.float32(0.6)]  # sorted, highest first
    assert dets.xyxy.tolist() == [[1, 1, 4, 3], [8, 6, 11, 9]]
    assert dets.mask[0].sum() == 6 and dets.data["class_name"].tolist() == ["a", "a"]
    assert len(label_map_to_detections(label, ["a", "b"], probs, min_area=1)) == 3


def test_probs_to_detections_uses_argmax_and_handles_empty():
    probs = np.zeros((2, 4, 4), dtype=np.float32)
    probs[0] = 1.0
    empty = probs_to_detections(probs, ["a"], min_area=1)
    assert len(empty) == 0 and empty.mask.shape == (0, 4, 4)
    probs[:, :2, :2] = [[[0.1]], [[0.9]]]
    assert len(probs_to_detections(probs, ["a"], min_area=1)) == 1


def test_flip_swaps_left_and_right_classes():
    lut = flip_map(["left_door", "right_door", "hood", "left_only"])
    assert lut[1] == 2 and lut[2] == 1 and lut[3] == 3 and lut[4] == 4 and lut[0] == 0 and lut[255] == 255


def test_augment_moves_image_and_mask_together_and_is_seeded():
    size = 32
    target = torch.zeros(size, size, dtype=torch.long)
    target[4:20, 6:14] = 1
    image = torch.stack([target.float(), torch.zeros(size, size), torch.zeros(size, size)])  # red where class 1
    cfg = AugmentConfig(hflip=1.0, scale=(0.6, 1.6), brightness=0, contrast=0, saturation=0)
    for seed in range(6):
        img, tgt = augment(image, target, cfg, torch.Generator().manual_seed(seed), flip_map(["x"]))
        valid = tgt != IGNORE_INDEX
        red = img[0] > 0.5
        assert (red[valid] == (tgt[valid] == 1)).float().mean() > 0.94  # same geometry (bilinear edges blur)
        again = augment(image, target, cfg, torch.Generator().manual_seed(seed), flip_map(["x"]))
        assert torch.equal(again[0], img) and torch.equal(again[1], tgt)
    flip_only = AugmentConfig(hflip=1.0, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0)
    img, tgt = augment(image, target, flip_only, torch.Generator().manual_seed(0), flip_map(["x"]))
    assert torch.equal(tgt, target.flip(-1)) and torch.equal(img[0] > 0.5, tgt == 1)


def test_letterbox_keeps_aspect_and_pads_with_ignore():
    image = np.full((20, 40, 3), 200, dtype=np.uint8)
    target = np.ones((20, 40), dtype=np.uint8)
    img, tgt = letterbox(image, target, 32)
    assert img.shape == (32, 32, 3) and (tgt[:16] == 1).all() and (tgt[16:] == IGNORE_INDEX).all()
    assert (img[16:] == 0).all()
