"""The lazy COCO reader: quirks of external files, mask decoding, the real car_parts file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded.errors import InputError
from grounded.formats.coco import CocoDataset, segmentation_to_mask
from grounded.utils.masks import mask_to_rle

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CAR_PARTS = SHARED / "car_parts" / "train" / "annotations.json"

SQUARE = [2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0]  # a 6x6 square, pixels 2..7


def _write_coco(folder: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _image(folder: Path, rel: str, size=(16, 12)) -> None:
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(folder / rel)


@pytest.mark.parametrize(
    "segmentation, expected_area",
    [
        ([SQUARE], 36),  # list of parts
        (SQUARE, 36),  # flat polygon
        ([SQUARE, [10.0, 2.0, 14.0, 2.0, 14.0, 4.0, 10.0, 4.0]], 36 + 8),  # two parts merged
        ([SQUARE, [1.0, 1.0, 2.0, 2.0]], 36),  # degenerate part (2 points) skipped
        ([], 0),
        (None, 0),
    ],
)
def test_polygon_decoding(segmentation, expected_area):
    mask = segmentation_to_mask(segmentation, 12, 16)
    assert mask.shape == (12, 16) and mask.dtype == bool
    assert int(mask.sum()) == expected_area


def test_rle_decoding_string_and_list_counts():
    mask = np.zeros((12, 16), dtype=bool)
    mask[3:9, 4:10] = True
    mask[5:7, 6:8] = False  # a hole
    compressed = mask_to_rle(mask)
    assert np.array_equal(segmentation_to_mask(compressed, 12, 16), mask)
    # uncompressed counts (column-major run lengths), as iscrowd=1 annotations store them
    flat = mask.flatten(order="F").astype(int)
    runs, current, count = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(count)
            current, count = v, 0
        count += 1
    runs.append(count)
    assert np.array_equal(segmentation_to_mask({"size": [12, 16], "counts": runs}, 12, 16), mask)


def test_quirks_background_bool_iscrowd_and_nested_images(tmp_path):
    _image(tmp_path, "JPEGImages/a.jpg")
    _image(tmp_path, "JPEGImages/b.jpg")
    _image(tmp_path, "other/deep/c.png")
    categories = [{"id": 1, "name": "_background_"}, {"id": 2, "name": "wheel"}, {"id": 5, "name": "hood"}]
    images = [
        {"id": 10, "file_name": "a.jpg", "path": "JPEGImages/a.jpg", "width": 16, "height": 12},
        {"id": 11, "file_name": "b.jpg", "path": "/datasets/elsewhere/b.jpg"},  # absolute path; no size
        {"id": 12, "file_name": "c.png", "width": 16, "height": 12},  # found by base name
    ]
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 5, "segmentation": [SQUARE], "area": 36, "bbox": [2, 2, 6, 6], "iscrowd": False},
        {"id": 2, "image_id": 10, "category_id": 2, "segmentation": [SQUARE], "iscrowd": True},  # no bbox, no area
        {"id": 3, "image_id": 11, "category_id": 2, "segmentation": [SQUARE], "bbox": [2, 2, 6, 6], "iscrowd": 0},
    ]
    ds = CocoDataset(_write_coco(tmp_path, images, annotations, categories))
    assert ds.classes == ["wheel", "hood"] and ds.category_ids == [2, 5]
    assert len(ds) == 3 and ds.num_annotations(2) == 0
    path, det = ds[0]
    assert path == str(tmp_path / "JPEGImages" / "a.jpg")
    assert det.class_id.tolist() == [1, 0]
    assert det.data["class_name"].tolist() == ["hood", "wheel"]
    assert det.data["iscrowd"].tolist() == [0, 1]
    assert det.mask.shape == (2, 12, 16) and det.mask.sum(axis=(1, 2)).tolist() == [36, 36]
    np.testing.assert_allclose(det.xyxy, [[2, 2, 8, 8], [2, 2, 8, 8]])  # second box from the mask
    assert ds.image_path(1) == tmp_path / "JPEGImages" / "b.jpg"
    assert ds.detections(1).mask.shape == (1, 12, 16)  # size read from the image header
    _, negative = ds[2]
    assert len(negative) == 0 and negative.mask.shape == (0, 12, 16)
    assert ds.detections(0, with_masks=False).mask is None


def test_used_background_category_is_kept(tmp_path):
    _image(tmp_path, "a.jpg")
    categories = [{"id": 1, "name": "background"}, {"id": 2, "name": "wheel"}]
    images = [{"id": 1, "file_name": "a.jpg", "width": 16, "height": 12}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [SQUARE], "bbox": [2, 2, 6, 6]}]
    ds = CocoDataset(_write_coco(tmp_path, images, annotations, categories))
    assert ds.classes == ["background", "wheel"]
    assert CocoDataset(tmp_path / "annotations.json", drop_unused_background=False).classes == ["background", "wheel"]


@pytest.mark.parametrize(
    "images, annotations, message",
    [
        ([{"id": 1, "file_name": "a.jpg"}], [{"id": 1, "image_id": 2, "category_id": 2, "bbox": [0, 0, 1, 1]}], "image id 2"),
        ([{"id": 1, "file_name": "a.jpg"}], [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}], "category ids [9]"),
        ([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], [], "appears twice"),
    ],
)
def test_inconsistent_files_are_refused(tmp_path, images, annotations, message):
    path = _write_coco(tmp_path, images, annotations, [{"id": 2, "name": "wheel"}])
    with pytest.raises(InputError, match=re.escape(message)):
        CocoDataset(path)


def test_missing_image_and_bad_json(tmp_path):
    path = _write_coco(tmp_path, [{"id": 1, "file_name": "nowhere.jpg", "width": 4, "height": 4}], [], [])
    with pytest.raises(InputError, match="nowhere.jpg"):
        CocoDataset(path).image_path(0)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        CocoDataset(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        CocoDataset(tmp_path / "missing.json")


@pytest.mark.skipif(not CAR_PARTS.is_file(), reason="../shared/data/car_parts is absent")
def test_car_parts_train_loads_like_pycocotools():
    from pycocotools.coco import COCO

    ds = CocoDataset(CAR_PARTS)
    assert len(ds) == 400 and len(ds.classes) == 18
    assert "_background_" not in ds.classes and ds.classes[-1] == "wheel"
    assert sum(ds.num_annotations(i) for i in range(len(ds))) == 3073
    reference = COCO(str(CAR_PARTS))
    for index in (0, 7, 399):
        path, det = ds[index]
        assert Path(path).is_file()
        image_id = ds.images[index]["id"]
        anns = reference.loadAnns(reference.getAnnIds(imgIds=[image_id]))
        assert len(det) == len(anns)
        for k, ann in enumerate(anns):
            assert np.array_equal(det.mask[k], reference.annToMask(ann).astype(bool))
            assert ds.category_ids[det.class_id[k]] == ann["category_id"]
