"""Review endpoints write OUT/reviews/ only; `grounded export` applies the reviews; a resume keeps them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounded.errors import InputError
from grounded.label.reviews import apply_review, read_review, review_counts, review_path, reviewed_record

from .conftest import CLASSES, make_run, review_target

COUNTS = {"reviewed_images": 0, "review_files": 0, "accepted": 0, "rejected": 0, "relabelled": 0, "fixed": 0,
          "added": 0, "candidates": 0}


def _decisions(review: dict) -> dict:
    """A review's decisions without their who / when stamps."""
    return {k: {f: v for f, v in d.items() if f not in ("by", "at")} for k, d in review["detections"].items()}



def _coco(run: Path) -> dict:
    return json.loads((run / "coco" / "train.json").read_text())


def _annotations_of(run: Path, relative: str) -> list[dict]:
    coco = {"images": [], "annotations": []}
    for split in ("train", "val"):
        data = json.loads((run / "coco" / f"{split}.json").read_text())
        coco["images"] += data["images"]
        coco["annotations"] += data["annotations"]
    image_id = next(im["id"] for im in coco["images"] if im["file_name"] == relative)
    return [a for a in coco["annotations"] if a["image_id"] == image_id]


def _records_bytes(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted((run / "records").rglob("*.json"))}


def test_review_endpoints_and_export_applies_them(make_client, run_dir):
    from grounded.label import export_run

    client = make_client(run=run_dir)
    info = client.get("/v1/run").json()
    assert info["classes"] == CLASSES
    listing = {e["file"]: e for e in client.get("/v1/run/images").json()}
    assert listing["broken.png"]["status"] == "error" and "not an image" in listing["broken.png"]["error"]
    assert any(e["status"] == "labelled" and not e["class_ids"] for e in listing.values())  # a negative image

    rel, record = review_target(run_dir)
    body = client.get("/v1/run/record", params={"file": rel}).json()
    assert len(body["detections"]) == len(record["detections"]) and body["review"] is None
    assert body["detections"][0]["mask"]["size"] == [record["height"], record["width"]]  # segment's JSON schema
    before = _annotations_of(run_dir, rel)
    records = _records_bytes(run_dir)

    new_class = (record["detections"][1]["class_id"] + 1) % len(CLASSES)
    review = {"reviewed": True, "detections": {"0": {"status": "rejected"}, "1": {"status": "accepted", "class_id": new_class}}}
    saved = client.put("/v1/run/review", params={"file": rel}, json=review)
    assert saved.status_code == 200, saved.text
    assert _decisions(read_review(run_dir, rel)) == review["detections"]
    assert saved.json()["revision"] == 1 and saved.json()["by"] == "anonymous"
    assert _records_bytes(run_dir) == records  # the model's records are never edited
    listing = {e["file"]: e for e in client.get("/v1/run/images").json()}
    assert listing[rel]["reviewed"] is True and listing[rel]["decisions"] == 2

    export_run(run_dir, ["coco"])
    after = _annotations_of(run_dir, rel)
    assert len(after) == len(before) - 1  # rejected: dropped
    moved = [a for a in after if a["bbox"] == before[1]["bbox"]]
    assert len(moved) == 1 and moved[0]["category_id"] == new_class + 1  # relabelled: moved (COCO ids = class + 1)
    assert before[0]["bbox"] not in [a["bbox"] for a in after]
    assert review_counts(run_dir) == {**COUNTS, "reviewed_images": 1, "review_files": 1, "accepted": 1, "rejected": 1,
                                      "relabelled": 1}


def test_a_resumed_run_keeps_the_reviews(run_dir):
    from grounded.label import label
    from grounded.label.records import read_record
    from grounded.label.reviews import write_review
    from grounded.testing.fake import FakePredictor

    rel, record = review_target(run_dir)
    write_review(run_dir, record, {"detections": {"0": {"status": "rejected"}}}, CLASSES)
    label(run_dir.parent / "images", CLASSES, run_dir, predictor=FakePredictor(), formats=["coco"], preview=0, progress=False)
    assert _decisions(read_review(run_dir, rel)) == {"0": {"status": "rejected"}}
    assert len(_annotations_of(run_dir, rel)) == len(read_record(run_dir, rel)["detections"]) - 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["extra"]["reviews"] == {**COUNTS, "review_files": 1, "rejected": 1}


def test_a_review_of_another_record_is_stale_and_ignored(run_dir, caplog):
    from grounded.label.reviews import write_review

    rel, record = review_target(run_dir)
    write_review(run_dir, record, {"detections": {"0": {"status": "rejected"}}}, CLASSES)
    changed = {**record, "detections": record["detections"][1:]}  # as if the run had been redone
    assert reviewed_record(run_dir, rel, changed, CLASSES) == changed
    assert "changed since" in caplog.text
    assert len(reviewed_record(run_dir, rel, record, CLASSES)["detections"]) == len(record["detections"]) - 1


@pytest.mark.parametrize(
    "review, message",
    [
        ({"detections": {"0": {"status": "maybe"}}}, "status must be one of"),
        ({"detections": {"99": {"status": "rejected"}}}, "out of range"),
        ({"detections": {"x": {"status": "rejected"}}}, "out of range"),
        ({"detections": {"0": {"class_id": 7}}}, "class_id must be an index"),
        ({"detections": {"0": {"class_id": "car"}}}, "class_id must be an index"),
        ({"detections": {"0": {"colour": "red"}}}, "expected"),
        ({"reviewed": "yes"}, "reviewed must be true or false"),
        ({"verdict": 1}, "unknown review field"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_reviews_are_refused(make_client, run_dir, review, message):
    client = make_client(run=run_dir)
    rel, _ = review_target(run_dir)
    response = client.put("/v1/run/review", params={"file": rel}, json=review)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not review_path(run_dir, rel).exists()


def test_review_put_must_be_json_and_errors_cannot_be_reviewed(make_client, run_dir):
    client = make_client(run=run_dir)
    rel, _ = review_target(run_dir)
    form = client.put("/v1/run/review", params={"file": rel}, data={"reviewed": "true"})
    assert form.status_code == 415  # a cross-site form post cannot write reviews
    broken = client.put("/v1/run/review", params={"file": "broken.png"}, json={"reviewed": True})
    assert broken.status_code == 400 and "could not be read" in broken.json()["detail"]
    assert make_client().get("/v1/run/images").status_code == 404  # no --run


def test_apply_review_and_review_path_rules():
    record = {"file": "a.jpg", "height": 2, "width": 2, "detections": [
        {"class_id": 0, "class_name": "car", "xyxy": [0, 0, 1, 1]},
        {"class_id": 1, "class_name": "wheel", "xyxy": [1, 1, 2, 2]}]}
    out = apply_review(record, {"detections": {"1": {"status": "accepted", "class_id": 2}}}, CLASSES)
    assert [d["class_name"] for d in out["detections"]] == ["car", "door"]
    assert out["detections"][1]["relabelled_from"] == "wheel" and record["detections"][1]["class_name"] == "wheel"
    for bad in ("../a.jpg", "/abs.jpg", "a/../../b.jpg", "a\\b.jpg", ""):
        with pytest.raises(InputError):
            review_path("out", bad)


def test_fixture_run_is_reusable(tmp_path):
    run = make_run(tmp_path)
    assert (run / "run.json").is_file() and review_counts(run)["review_files"] == 0


def test_a_concurrent_edit_gets_409_with_the_current_review_and_the_queue_is_served(make_client, run_dir):
    from grounded.label.queue import run_review_queue

    client = make_client(run=run_dir)
    rel, _ = review_target(run_dir)
    first = client.put("/v1/run/review", params={"file": rel},
                       json={"revision": 0, "by": "ana", "detections": {"0": {"status": "rejected"}}})
    assert first.status_code == 200 and first.json()["revision"] == 1
    late = client.put("/v1/run/review", params={"file": rel}, json={"revision": 0, "by": "ben", "reviewed": True})
    assert late.status_code == 409 and "reload it" in late.json()["detail"]
    assert late.json()["current"]["by"] == "ana" and late.json()["current"]["detections"]["0"]["status"] == "rejected"
    assert client.get("/v1/run/record", params={"file": rel}).json()["review"]["revision"] == 1
    retry = client.put("/v1/run/review", params={"file": rel}, json={**late.json()["current"], "by": "ben",
                                                                     "reviewed": True})
    assert retry.status_code == 200 and retry.json()["revision"] == 2

    queue = client.get("/v1/run/queue", params={"limit": 100}).json()
    assert [q["file"] for q in queue] == [q.file for q in run_review_queue(run_dir, 100)]
    assert all(q["reasons"] and q["doubt"] > 0 for q in queue)
