"""Reviews that fix what the teacher got wrong: added objects, fixed masks, who / when, conflicts; `grounded
export` applies them and counts them; `grounded review-queue` (student / teacher disagreement); `grounded train RUN`
trains on the corrected labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from grounded.cli import main
from grounded.errors import InputError
from grounded.label.reviews import ReviewConflict, read_review, review_counts, write_review
from grounded.utils.masks import mask_to_rle

CLASSES = ["car", "wheel", "door"]


@pytest.fixture
def run(tmp_path) -> Path:
    """A `grounded label` run of 6 generated 60x80 images made with FakePredictor (COCO exported)."""
    from grounded.label import label
    from grounded.testing.fake import FakePredictor, make_images

    make_images(tmp_path / "images", 6, size=(60, 80))
    label(tmp_path / "images", CLASSES, tmp_path / "run", predictor=FakePredictor(), formats=["coco"], preview=0,
          progress=False)
    return tmp_path / "run"


def _target(run: Path) -> dict:
    from grounded.label.records import read_record

    for path in sorted((run / "records").glob("*.json")):
        record = read_record(run, path.name[: -len(".json")])
        if record and len(record.get("detections", [])) >= 2:
            return record
    raise AssertionError("no image with two detections")


def _square(y0: int, x0: int, side: int, hw=(60, 80)) -> np.ndarray:
    mask = np.zeros(hw, dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def _annotations(run: Path, image: str) -> list[dict]:
    found = []
    for split in ("train", "val"):
        path = run / "coco" / f"{split}.json"
        if path.is_file():
            coco = json.loads(path.read_text())
            ids = {im["id"] for im in coco["images"] if im["file_name"] == image}
            found += [a for a in coco["annotations"] if a["image_id"] in ids]
    return found


def test_add_fix_delete_are_stamped_and_exported(run, capsys):
    record = _target(run)
    image = record["image"]
    fixed, added, candidate = _square(5, 5, 20), _square(30, 50, 12), _square(40, 10, 8)
    first = write_review(run, record, {"by": "ana", "reviewed": True, "detections": {
        "0": {"status": "rejected"},  # delete
        "1": {"status": "accepted", "mask": mask_to_rle(fixed)}},  # fix
        "added": [{"id": "new1", "class_id": 2, "mask": mask_to_rle(added), "source": "clicks"},
                  {"id": "cand", "class_id": 1, "mask": mask_to_rle(candidate), "source": "find_more",
                   "status": "candidate", "phrase": "a mirror", "confidence": 0.4}]}, CLASSES)
    assert first["revision"] == 1 and first["by"] == "ana" and first["at"].endswith("Z")
    assert all(d["by"] == "ana" for d in first["detections"].values()) and first["added"][0]["by"] == "ana"

    # a second person accepts the candidate on revision 1; what they did not touch keeps ana's stamp
    stored = read_review(run, image)
    stored["added"][1]["status"] = "accepted"
    second = write_review(run, record, {**stored, "by": "ben"}, CLASSES)
    assert second["revision"] == 2 and second["added"][1]["by"] == "ben" and second["added"][0]["by"] == "ana"
    assert second["detections"]["0"]["by"] == "ana" and second["detections"]["0"]["at"] == first["at"]

    # ana's page still holds revision 1: her next save is refused with the current state, never a silent overwrite
    with pytest.raises(ReviewConflict, match="changed by ben") as conflict:
        write_review(run, record, {**stored, "by": "ana", "revision": 1, "reviewed": False}, CLASSES)
    assert conflict.value.current["revision"] == 2 and read_review(run, image)["reviewed"] is True

    assert main(["export", str(run), "--format", "coco"]) == 0
    assert "1 rejected, 2 added, 1 fixed" in capsys.readouterr().out
    annotations = _annotations(run, image)
    assert len(annotations) == len(record["detections"]) - 1 + 2  # one deleted, two added
    by_area = {a["area"]: a for a in annotations}
    assert by_area[400]["bbox"] == [5, 5, 20, 20]  # the fixed mask, its box recomputed
    assert by_area[144]["category_id"] == 3 and by_area[64]["category_id"] == 2  # added, COCO id = class + 1
    summary = json.loads((run / "summary.json").read_text())["extra"]["reviews"]
    assert summary == review_counts(run) and (summary["fixed"], summary["added"], summary["rejected"]) == (1, 2, 1)


def test_candidates_and_rejected_additions_are_not_exported(run):
    from grounded.label import export_run

    record = _target(run)
    write_review(run, record, {"added": [
        {"class_id": 0, "mask": mask_to_rle(_square(1, 1, 5)), "source": "find_more", "status": "candidate"},
        {"class_id": 0, "mask": mask_to_rle(_square(20, 20, 5)), "source": "brush", "status": "rejected"}]}, CLASSES)
    export_run(run, ["coco"])
    assert len(_annotations(run, record["image"])) == len(record["detections"])
    assert review_counts(run)["candidates"] == 1 and review_counts(run)["added"] == 0


@pytest.mark.parametrize("review, message", [
    ({"added": [{"class_id": 0}]}, "mask must be a COCO RLE"),
    ({"added": [{"class_id": 9, "mask": {"size": [60, 80], "counts": "PQ"}}]}, "class_id must be an index"),
    ({"added": [{"class_id": 0, "mask": {"size": [6, 8], "counts": "PQ"}}]}, "is not the image's [60, 80]"),
    ({"added": [{"class_id": 0, "mask": {"size": [60, 80], "counts": 7}}]}, "cannot be decoded"),
    ({"added": [{"class_id": 0, "source": "magic", "mask": {"size": [60, 80], "counts": "PQ"}}]}, "source must be"),
    ({"detections": {"0": {"mask": {"size": [1, 1]}}}}, "mask must be a COCO RLE"),
    ({"by": "x" * 81}, "at most 80"),
    ({"revision": -1}, "revision must be"),
])
def test_bad_edits_name_the_field(run, review, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        write_review(run, _target(run), review, CLASSES)


def test_the_queue_adds_student_teacher_disagreement(run, capsys):
    from grounded.label.queue import class_mask_iou, read_disagreement, run_review_queue, write_disagreement
    from grounded.label.records import read_record

    square = _square(0, 0, 10)
    one = sv.Detections(xyxy=np.zeros((1, 4)), mask=square[None], class_id=np.array([0]))
    half = sv.Detections(xyxy=np.zeros((1, 4)), mask=_square(0, 0, 10)[None] & (np.arange(80) < 5)[None, None],
                         class_id=np.array([0]))
    other = sv.Detections(xyxy=np.zeros((1, 4)), mask=square[None], class_id=np.array([1]))
    assert class_mask_iou(one, one) == 1.0 and class_mask_iou(one, half) == 0.5 and class_mask_iou(one, other) == 0.0

    images = sorted(p.name[: -len(".json")] for p in (run / "records").glob("*.json"))
    empty = next(i for i in images if not read_record(run, i)["detections"])  # the teacher found nothing here
    before = {q.file for q in run_review_queue(run, None)}
    assert empty not in before
    write_disagreement(run, "student/", {empty: 0.1, images[0]: 0.95})
    assert read_disagreement(run) == {empty: 0.1, images[0]: 0.95}
    queue = run_review_queue(run, None)
    top = next(q for q in queue if q.file == empty)
    assert top.doubt == pytest.approx(0.9) and top.reasons == ["student and teacher disagree (mask IoU 0.10)"]
    assert queue[0].doubt >= top.doubt and [q.doubt for q in queue] == sorted((q.doubt for q in queue), reverse=True)

    assert main(["review-queue", str(run), "--limit", "0"]) == 0
    printed = capsys.readouterr().out
    assert empty in printed and "student and teacher disagree" in printed
    assert main(["review-queue", str(run), "--json"]) == 0
    assert {q["file"] for q in json.loads(capsys.readouterr().out)} == {q.file for q in queue[:20]}


def test_train_from_a_reviewed_run_then_the_students_disagreement(run, tmp_path, capsys):
    """`grounded train RUN` rebuilds the COCO export when reviews are newer (the student learns the fixes); then
    `grounded review-queue RUN --student` runs it and keeps its agreement with the teacher."""
    record = _target(run)
    write_review(run, record, {"added": [{"class_id": 2, "mask": mask_to_rle(_square(30, 50, 12))}]}, CLASSES)
    student = tmp_path / "student"
    assert main(["train", str(run), "--out", str(student), "--arch", "unet", "--size", "tiny", "--max-steps", "2",
                 "--image-size", "64", "--batch-size", "2", "--no-export"]) == 0
    assert "COCO export rebuilt with the reviews (0 accepted, 0 rejected, 1 added, 0 fixed)" in capsys.readouterr().out
    added = [a for a in _annotations(run, record["image"]) if a["area"] == 144]
    assert len(added) == 1 and added[0]["bbox"] == [50, 30, 12, 12] and added[0]["category_id"] == 3

    assert main(["review-queue", str(run), "--student", str(student), "--device", "cpu"]) == 0
    assert "student vs teacher: 6 images" in capsys.readouterr().out
    agreement = json.loads((run / "student_disagreement.json").read_text())
    assert agreement["student"] == str(student) and len(agreement["images"]) == 6
    assert all(0.0 <= v <= 1.0 for v in agreement["images"].values())
