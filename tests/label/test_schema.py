"""One detections schema (grounded/io/detections_json.py) for records and segment files: every data column
round-trips, and records written by older versions still read and export."""

from __future__ import annotations

import json

import numpy as np
import supervision as sv

from grounded.formats.coco import CocoDataset
from grounded.io.detections_json import SCHEMA_VERSION, detections_from_json, detections_to_json, upgrade
from grounded.label import export_run, label
from grounded.label.records import read_record, record_path
from grounded.testing.fake import FakePredictor, make_images
from grounded.utils.masks import mask_to_rle

# A record exactly as grounded 0.1.0 wrote it (before the schema key): "file", "xyxy", "rle".
MASK = np.zeros((48, 64), dtype=bool)
MASK[10:20, 5:25] = True
OLD_RECORD = {
    "file": "img_00000.png", "height": 48, "width": 64,
    "detections": [{"class_id": 1, "class_name": "wheel", "phrase": "wheel", "confidence": 0.812345,
                    "mask_score": 0.9, "xyxy": [5.0, 10.0, 25.0, 20.0], "rle": mask_to_rle(MASK)}],
}


def _detections() -> sv.Detections:
    mask = np.zeros((2, 20, 30), bool)
    mask[0, 2:5, 3:9] = True
    mask[1, 10:, 20:] = True
    return sv.Detections(
        xyxy=np.array([[3, 2, 9, 5], [20, 10, 30, 20]], np.float32), mask=mask,
        confidence=np.array([0.9, 0.4], np.float32), class_id=np.array([1, 0]),
        data={"class_name": np.array(["car", "wheel"]), "phrase": np.array(["car", "tire"]),
              "mask_score": np.array([0.8, 0.7], np.float32), "verify": np.array(["confirmed", "corrected"]),
              "clip_prob": np.array([0.61, 0.52]), "class_name_detector": np.array(["car", "car"]),
              "kept": np.array([True, False])},
    )


def test_every_data_column_round_trips():
    dets = _detections()
    obj = json.loads(json.dumps(detections_to_json(dets, (20, 30), "a.png")))
    assert obj["schema"] == SCHEMA_VERSION and obj["image"] == "a.png"
    back = detections_from_json(obj)
    np.testing.assert_array_equal(back.mask, dets.mask)
    np.testing.assert_array_equal(back.class_id, dets.class_id)
    np.testing.assert_allclose(back.xyxy, dets.xyxy)
    np.testing.assert_allclose(back.confidence, dets.confidence, atol=1e-6)
    assert sorted(back.data) == sorted(dets.data)
    for key, values in dets.data.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(back.data[key], values, atol=1e-6)
        else:
            assert back.data[key].tolist() == values.tolist(), key
    assert [d["area"] for d in obj["detections"]] == dets.mask.reshape(2, -1).sum(1).tolist()


def test_precomputed_rles_give_the_same_object():
    dets = _detections()
    rles = [mask_to_rle(m) for m in dets.mask]
    without_masks = sv.Detections(xyxy=dets.xyxy, confidence=dets.confidence, class_id=dets.class_id, data=dets.data)
    assert detections_to_json(without_masks, (20, 30), rles=rles) == detections_to_json(dets, (20, 30))


def test_label_records_keep_every_column(tmp_path):
    make_images(tmp_path / "images", 6)
    label(tmp_path / "images", "car, wheel", tmp_path / "out", predictor=FakePredictor(), progress=False, preview=0)
    record = next(r for i in range(6) if (r := read_record(tmp_path / "out", f"img_{i:05d}.png"))["detections"])
    assert record["schema"] == SCHEMA_VERSION and all("mask_score" in d for d in record["detections"])
    assert "mask_score" in detections_from_json(record).data  # the old reader dropped it


def test_an_old_format_record_still_reads_and_exports(tmp_path):
    assert upgrade(OLD_RECORD)["detections"][0]["bbox_xyxy"] == [5.0, 10.0, 25.0, 20.0]
    old = detections_from_json(OLD_RECORD)
    np.testing.assert_array_equal(old.mask[0], MASK)
    assert old.data["class_name"].tolist() == ["wheel"] and old.data["mask_score"].tolist() == [np.float32(0.9)]

    images = tmp_path / "images"
    make_images(images, 3)
    out = tmp_path / "out"
    label(images, "car, wheel", out, predictor=FakePredictor(), formats=["coco"], progress=False, preview=0,
          split="1")
    record_path(out, "img_00000.png").write_text(json.dumps(OLD_RECORD, sort_keys=True) + "\n")
    again = label(images, "car, wheel", out, predictor=FakePredictor(), formats=["coco"], progress=False, preview=0,
                  split="1")
    assert again.resumed == 3 and again.processed == 0  # the old record counts as done
    export_run(out, ["coco"])
    coco = CocoDataset(out / "coco" / "train.json", images_root=images)
    index = [img["file_name"] for img in coco.images].index("img_00000.png")
    _, dets = coco[index]
    assert dets.class_id.tolist() == [1]
    np.testing.assert_array_equal(dets.mask[0], MASK)


def test_segment_files_of_version_1_still_read():
    obj = detections_to_json(_detections(), (20, 30), "a.png")
    del obj["schema"]
    assert detections_from_json(obj).data["verify"].tolist() == ["confirmed", "corrected"]
