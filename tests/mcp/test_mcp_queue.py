"""The review queue's ordering (grounded/label/queue.py), the one the ``review_queue`` tool serves."""

from __future__ import annotations

import pytest

from grounded.label.queue import QueueSettings, detection_doubt, review_queue, run_review_queue


def record(image, *detections):
    return {"schema": 2, "image": image, "height": 10, "width": 10,
            "detections": [{"class_id": c, "class_name": ["car", "wheel"][c], "confidence": s, **extra}
                           for c, s, extra in detections]}


RECORDS = [
    record("sure.jpg", (0, 0.9, {}), (1, 0.8, {})),
    record("at_threshold.jpg", (0, 0.9, {}), (1, 0.41, {})),  # wheel's threshold is 0.4
    record("near.jpg", (0, 0.36, {})),  # car's threshold is 0.3: 0.06 above it
    record("clip.jpg", (1, 0.9, {"verify": "corrected", "class_name_detector": "car"})),
    record("unsure_clip.jpg", (0, 0.9, {"verify": "uncertain"}), (1, 0.9, {"verify": "confirmed"})),
    record("empty.jpg"),
    {"schema": 2, "image": "broken.jpg", "error": "OSError: truncated", "error_type": "OSError"},
]


def test_most_doubtful_first_with_reasons():
    queue = review_queue(RECORDS, thresholds=[0.3, 0.4])
    assert [q.file for q in queue] == ["clip.jpg", "at_threshold.jpg", "unsure_clip.jpg", "near.jpg"]
    assert queue[0].doubt == 1.0 and queue[0].reasons == ["CLIP relabelled car as wheel"]
    (wheel,) = queue[1].detections  # the confident car is not doubtful
    assert wheel.index == 1 and wheel.doubt == pytest.approx(0.9)
    assert queue[1].reasons[0] == "wheel 0.41 is 0.01 above its threshold 0.40"
    assert queue[3].detections[0].reasons == ["car 0.36 is 0.06 above its threshold 0.30",
                                              "car has a low score (0.36)"]


def test_thresholds_unknown_reviewed_and_limit():
    queue = review_queue(RECORDS, thresholds=None, reviewed={"clip.jpg"}, limit=2)
    assert [q.file for q in queue] == ["unsure_clip.jpg", "near.jpg"]  # only scores and CLIP count
    assert review_queue(RECORDS, limit=0) == []


def test_detection_doubt_bands():
    settings = QueueSettings(band=0.2, low_score=0.5)
    assert detection_doubt({"confidence": 0.9}, 0.35, settings) == (0.0, [])
    assert detection_doubt({"confidence": 0.45, "class_name": "a"}, 0.35, settings)[0] == pytest.approx(0.5)
    assert detection_doubt({"confidence": None, "class_name": "a"}, 0.35, settings) == (0.0, [])


def test_run_reader_leaves_out_what_a_person_reviewed(tmp_path):
    from grounded.label import label
    from grounded.label.records import read_record
    from grounded.label.reviews import write_review
    from grounded.testing.fake import FakePredictor, make_images

    make_images(tmp_path / "images", 12)
    label(tmp_path / "images", ["car", "wheel"], tmp_path / "run", predictor=FakePredictor(), formats=["coco"],
          preview=0, progress=False)
    queue = run_review_queue(tmp_path / "run", limit=None)
    assert queue and all(q.reasons for q in queue)  # FakePredictor records no thresholds: low scores only
    first = queue[0].file
    write_review(tmp_path / "run", read_record(tmp_path / "run", first), {"reviewed": True}, ["car", "wheel"])
    assert first not in [q.file for q in run_review_queue(tmp_path / "run", limit=None)]
    assert first in [q.file for q in run_review_queue(tmp_path / "run", limit=None, include_reviewed=True)]
