"""`grounded export OUT --format label-studio`: tasks with predictions Label Studio imports as pre-annotations."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from grounded.formats.label_studio import (
    brush_rle_to_mask,
    decode_brush_rle,
    encode_brush_rle,
    mask_to_brush_rle,
)
from grounded.label.records import read_record, record_to_detections

from .conftest import CLASSES, review_target

# label_studio_sdk 2.1.2, converter/brush.py: mask2rle(mask * 255) of the 4x5 mask below (a 2x3 block with a hole)
SDK_GOLDEN = [0, 0, 0, 80, 57, 27, 254, 23, 0, 183, 255, 56, 4, 127, 241, 128, 71, 255, 133, 192, 0]


def _golden_mask() -> np.ndarray:
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:4] = True
    mask[2, 2] = False
    return mask


def test_brush_rle_matches_label_studio_sdk_bytes():
    assert mask_to_brush_rle(_golden_mask()) == SDK_GOLDEN
    assert (brush_rle_to_mask(SDK_GOLDEN, 4, 5) == _golden_mask()).all()


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, 2, 3, 3, 3, 4] * 5, dtype=np.uint8),  # literal single values and short runs
        np.zeros(70_000, dtype=np.uint8),  # a run longer than 2**16 (split like the SDK does)
        np.r_[np.zeros(140_000), np.full(9, 255), [7], np.ones(300)].astype(np.uint8),  # every run-length width
        np.zeros(0, dtype=np.uint8),
    ],
)
def test_brush_rle_round_trips(values):
    assert (decode_brush_rle(encode_brush_rle(values)) == values).all()


def test_brush_masks_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        mask = rng.random((h, w)) < rng.random()
        assert (brush_rle_to_mask(mask_to_brush_rle(mask), h, w) == mask).all()


def test_sdk_decodes_our_brush_when_installed():
    brush = pytest.importorskip("label_studio_sdk.converter.brush", reason="label-studio-sdk not installed")
    mask = _golden_mask()
    decoded = brush.decode_rle(bytes(mask_to_brush_rle(mask))).reshape(4, 5, 4)[:, :, 3]
    assert ((decoded > 0) == mask).all()


def _flatten(result: dict) -> dict:
    """What label_studio_sdk's Converter.annotation_result_from_task hands its exporters: value + type + size."""
    value = dict(result["value"])
    value.update(type=result["type"], original_width=result["original_width"], original_height=result["original_height"])
    return value


def _mask_of(value: dict) -> np.ndarray:
    h, w = value["original_height"], value["original_width"]
    if value["type"] == "brushlabels":
        assert value["format"] == "rle"
        return brush_rle_to_mask(value["rle"], h, w)
    assert value["type"] == "polygonlabels" and value["closed"] is True
    flat = [c for x, y in value["points"] for c in (x / 100.0 * w, y / 100.0 * h)]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([flat], h, w))).astype(bool)


def test_export_writes_importable_tasks_with_reviews_applied(run_dir):
    from grounded.cli import main
    from grounded.label.reviews import write_review

    rel, record = review_target(run_dir)
    write_review(run_dir, record, {"detections": {"0": {"status": "rejected"}}}, CLASSES)
    assert main(["export", str(run_dir), "--format", "label-studio"]) == 0
    tasks = json.loads((run_dir / "label-studio" / "tasks.json").read_text())
    config = ElementTree.fromstring((run_dir / "label-studio" / "label_config.xml").read_text())
    assert config.find("Image").get("name") == "image" and config.find("Image").get("value") == "$image"
    for tag in ("PolygonLabels", "BrushLabels"):
        assert [label.get("value") for label in config.find(tag)] == CLASSES
    names = {config.find(tag).get("name"): tag.lower() for tag in ("PolygonLabels", "BrushLabels")}

    by_file = {t["data"]["image"].split("?d=", 1)[1]: t for t in tasks}
    assert "broken.png" not in by_file and "sub/grey.png" in by_file  # errors left out, nested paths kept
    kinds = set()
    for file, task in by_file.items():
        prediction = task["predictions"][0]
        record = read_record(run_dir, file)
        detections = record_to_detections(record)
        keep = [k for k in range(len(detections)) if not (file == rel and k == 0)]
        assert len(prediction["result"]) == len(keep)
        for k, result in zip(keep, prediction["result"], strict=True):
            assert names[result["from_name"]] == result["type"] and result["to_name"] == "image"
            value = _flatten(result)
            assert (value["original_height"], value["original_width"]) == (record["height"], record["width"])
            assert value[result["type"]] == [record["detections"][k]["class_name"]]
            assert (_mask_of(value) == detections.mask[k]).all(), (file, k, result["type"])
            kinds.add(result["type"])
    assert kinds == {"polygonlabels", "brushlabels"}  # the fake run has boxes, rings (holes) and pairs (two parts)
