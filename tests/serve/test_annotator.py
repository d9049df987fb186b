"""A simulated annotator fixes a teacher's mistakes on real Car Parts photos by clicking, through the REST API.

The "teacher" is the Car Parts ground truth with mistakes put in: objects missed, one mask leaking 10 px past its
object. The annotator follows the NoC protocol (grounded.testing.oracle: next click at the centre of the largest
error region) against the ground truth, with the deterministic oracle segmenter behind `POST /v1/segment/points`;
after every click it saves the object in the image's review (`PUT /v1/run/review`, with the revision it edited).
Every object reaches IoU >= 0.9, every step is a saved revision, and `grounded export` holds the fixed labels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from grounded.formats.coco import segmentation_to_mask
from grounded.testing.oracle import (
    ClicksOnlyPredictor,
    OracleSegmenter,
    click_curve,
    mask_iou,
    noc,
    pixel_key,
)
from grounded.utils.images import load_image
from grounded.utils.masks import mask_to_rle, rle_to_mask

from .conftest import import_coco_run

IMAGES = [1, 2]  # Car Parts train images (512x512) with at least three objects of MIN_AREA
MIN_AREA = 1500  # objects the annotator works on: big enough that one coarse guess is not already right


@pytest.fixture
def scene(tmp_path, car_parts):
    """(run, oracle truth, tasks): per image, the two largest-but-one objects are missed by the teacher and the
    largest one leaks; tasks = [(image, kind, ground truth mask, class id, record index or None)]."""
    tasks, truth = [], {}

    def teacher(rel, detections):
        order = [int(i) for i in np.argsort(-detections.mask.sum(axis=(1, 2))) if detections.mask[i].sum() >= MIN_AREA]
        leak, missed = order[0], order[1:3]
        kept = np.array([i for i in range(len(detections)) if i not in missed])
        for i in missed:
            tasks.append((rel, "add", detections.mask[i].copy(), int(detections.class_id[i]), None))
        good = detections.mask[leak].copy()
        detections.mask[leak] = ndimage.binary_dilation(good, iterations=10)
        ys, xs = np.nonzero(detections.mask[leak])
        detections.xyxy[leak] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        tasks.append((rel, "fix", good, int(detections.class_id[leak]), int(np.nonzero(kept == leak)[0][0])))
        return detections[kept]

    run = import_coco_run(car_parts, tmp_path, IMAGES, teacher)
    from grounded.formats.coco import CocoDataset

    dataset = CocoDataset(str(car_parts))
    for index in IMAGES:
        path, detections = dataset[index]
        truth[pixel_key(load_image(path))] = list(detections.mask)
    return run, truth, tasks


class Annotator:
    """The page's side of the protocol: each click sent with all the object's clicks so far (and the previous
    answer's mask_id), then the object saved in the image's review on the revision last seen."""

    def __init__(self, client, run) -> None:
        self.client, self.run, self.image_ids, self.steps = client, run, {}, 0

    def work_on(self, rel: str, kind: str, target: np.ndarray, class_id: int, index: int | None) -> list[float]:
        """Click until the object reaches IoU 0.9 (at most 20 clicks); the IoU after each click."""
        self.rel, self.kind, self.class_id, self.index, self.mask_id = rel, kind, class_id, index, None
        self.added_id = f"added-{self.steps}"
        self.record = self.client.get("/v1/run/record", params={"file": rel}).json()
        start = rle_to_mask(self.record["detections"][index]["mask"]) if kind == "fix" else None
        return click_curve(self.click, target, max_clicks=20, stop_iou=0.9, start=start)

    def click(self, points: list, labels: list) -> np.ndarray:
        form = {"points": json.dumps(points), "labels": json.dumps(labels)}
        if self.mask_id:
            form["mask_id"] = self.mask_id
        elif self.kind == "fix":  # a fix starts from the detection's box and mask
            detection = self.record["detections"][self.index]
            form.update(box=json.dumps(detection["bbox_xyxy"]), mask=json.dumps(detection["mask"]))
        files = None
        if self.rel in self.image_ids:
            form["image_id"] = self.image_ids[self.rel]
        else:
            files = {"image": (self.rel, (self.run.parent / "images" / self.rel).read_bytes(), "image/jpeg")}
        answer = self.client.post("/v1/segment/points", data=form, files=files)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        self.image_ids[self.rel], self.mask_id = body["image_id"], body["mask_id"]
        mask = rle_to_mask(body["detections"][0]["mask"])
        review = self.client.get("/v1/run/record", params={"file": self.rel}).json()["review"] or {"revision": 0}
        edit = {"revision": review["revision"], "by": "annotator", "detections": review.get("detections", {}),
                "added": [a for a in review.get("added", []) if a["id"] != self.added_id]}
        if self.kind == "add":
            edit["added"].append({"id": self.added_id, "class_id": self.class_id, "mask": mask_to_rle(mask),
                                  "source": "clicks"})
        else:
            edit["detections"][str(self.index)] = {"status": "accepted", "mask": mask_to_rle(mask)}
        saved = self.client.put("/v1/run/review", params={"file": self.rel}, json=edit)
        assert saved.status_code == 200 and saved.json()["revision"] == review["revision"] + 1, saved.text
        self.steps += 1
        return mask


def test_a_simulated_annotator_reaches_iou_09_and_every_step_is_saved_and_exported(scene, make_client, capsys):
    from grounded.cli import main
    from grounded.label.reviews import read_review
    from grounded.serve.engine import Engine

    run, truth, tasks = scene
    annotator = Annotator(make_client(run=run, engine=Engine(lambda: ClicksOnlyPredictor(OracleSegmenter(truth)))), run)
    nocs = []
    for task in tasks:
        ious = annotator.work_on(*task)
        assert ious[-1] >= 0.9, f"{task[1]} on {task[0]}: IoU {ious}"
        nocs.append(noc(ious, 0.9))
    steps = annotator.steps
    assert len(tasks) == 3 * len(IMAGES) and max(nocs) < 20 and sum(nocs) == steps
    assert sum(read_review(run, rel)["revision"] for rel in {t[0] for t in tasks}) == steps  # every step saved

    assert main(["export", str(run), "--format", "coco"]) == 0
    assert f"{2 * len(IMAGES)} added, {len(IMAGES)} fixed" in capsys.readouterr().out
    coco = json.loads((run / "coco" / "train.json").read_text())
    for rel, kind, target, class_id, _ in tasks:
        image = next(im for im in coco["images"] if im["file_name"] == rel)
        exported = [(a["category_id"], segmentation_to_mask(a["segmentation"], image["height"], image["width"]))
                    for a in coco["annotations"] if a["image_id"] == image["id"]]
        best = max(exported, key=lambda e: mask_iou(e[1], target))
        assert mask_iou(best[1], target) >= 0.9 and best[0] == class_id + 1, (rel, kind)
