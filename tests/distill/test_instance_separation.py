"""Touching objects of one class stay apart: the boundary target marks where they meet, the decoding splits
them, ``StudentPredictor.predict`` returns one instance per object, and mask AP scores both ways."""

from __future__ import annotations

import numpy as np
import supervision as sv

from grounded.distill.cache import instance_ids
from grounded.distill.instances import instance_boundaries, label_map_to_detections
from grounded.distill.metrics import MaskAP
from grounded.distill.predictor import StudentPredictor


def two_touching_discs(size: int = 64) -> np.ndarray:
    """(2, size, size) bool: two discs of one class that touch along a vertical seam at x = size / 2."""
    yy, xx = np.mgrid[:size, :size]
    left = (yy - size / 2) ** 2 + (xx - size / 2 + 12) ** 2 <= 13**2
    right = (yy - size / 2) ** 2 + (xx - size / 2 - 12) ** 2 <= 13**2
    left &= xx < size // 2
    right &= xx >= size // 2
    return np.stack([left, right])


def test_boundary_target_marks_only_where_instances_meet():
    masks = two_touching_discs()
    boundary = instance_boundaries(instance_ids(masks, masks.shape[1:]), width=1)
    ys, xs = np.nonzero(boundary)
    assert set(xs.tolist()) == {31, 32} and len(ys) > 10  # the seam, both sides; no outer contour
    alone = instance_boundaries(instance_ids(masks[:1], masks.shape[1:]), width=1)
    assert not alone.any()


def fake_student(masks: np.ndarray, with_boundary: bool):
    """A backend whose logits say 'class a' on both discs, and (optionally) 'boundary' on their seam."""
    union = masks.any(0)
    seam = instance_boundaries(instance_ids(masks, union.shape), width=1)
    logits = np.stack([np.where(union, -4.0, 4.0), np.where(union, 4.0, -4.0)]).astype(np.float32)
    if with_boundary:
        logits = np.concatenate([logits, np.where(seam, 4.0, -4.0)[None].astype(np.float32)])

    def run(batch: np.ndarray) -> np.ndarray:
        assert batch.shape[2:] == union.shape
        return logits[None]

    return StudentPredictor(run, ["a"], image_size=union.shape[0], stride=32, min_area=4, boundary_head=with_boundary)


def test_predict_returns_one_instance_per_touching_object():
    masks = two_touching_discs()
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    predictor = fake_student(masks, with_boundary=True)
    detections = predictor.predict(image)
    assert len(detections) == 2 and detections.class_id.tolist() == [0, 0]
    for truth in masks:  # each predicted instance is one of the discs, seam pixels given back to their owner
        iou = max((d & truth).sum() / (d | truth).sum() for d in detections.mask)
        assert iou > 0.95
    assert len(predictor.predict(image, instances="components")) == 1
    assert len(fake_student(masks, with_boundary=False).predict(image)) == 1


def test_mask_ap_both_ways_on_touching_objects():
    masks = two_touching_discs()
    truth = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.array([0, 0]))
    predictor = fake_student(masks, with_boundary=True)
    probs, boundary = predictor.outputs(np.zeros((64, 64, 3), dtype=np.uint8))
    aware, components = MaskAP(["a"]), MaskAP(["a"])
    aware.add(truth, predictor.detections(probs, boundary), (64, 64))
    components.add(truth, predictor.detections(probs, boundary, instances="components"), (64, 64))
    aware, components = aware.compute(), components.compute()
    assert aware["ap"] > 0.9 and components["ap"] < 0.1  # the merged instance overlaps each disc by IoU ~0.5


def test_a_region_that_is_all_boundary_stays_one_instance():
    label = np.zeros((10, 10), dtype=np.int32)
    label[2:5, 2:5] = 1
    dets = label_map_to_detections(label, ["a"], min_area=1, boundary=np.ones((10, 10)))
    assert len(dets) == 1 and dets.mask[0].sum() == 9
