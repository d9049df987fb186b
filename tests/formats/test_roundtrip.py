"""Every export round-trips: write with our code, read back with pycocotools / supervision / PIL, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded.formats.coco import CocoDataset, CocoWriter, encode_segmentation
from grounded.formats.masks_png import load_mask_png, save_labels_txt, save_mask_png, semantic_to_detections
from grounded.formats.voc import load_voc, save_voc
from grounded.formats.yolo import load_yolo_labels, save_data_yaml, save_yolo_labels
from grounded.utils.masks import masks_iou, rasterize_semantic

H, W = 40, 60
CLASSES = ["car", "wheel", "dog"]


def _shapes() -> dict[str, np.ndarray]:
    box = np.zeros((H, W), dtype=bool)
    box[5:20, 4:30] = True
    ring = np.zeros((H, W), dtype=bool)
    ring[10:34, 30:56] = True
    ring[16:28, 38:48] = False  # a hole
    pair = np.zeros((H, W), dtype=bool)
    pair[24:38, 2:10] = True
    pair[24:38, 16:24] = True  # a second part
    return {"box": box, "ring": ring, "pair": pair}


def _detections() -> sv.Detections:
    masks = np.stack(list(_shapes().values()))
    return sv.Detections(
        xyxy=sv.mask_to_xyxy(masks).astype(np.float32),
        mask=masks,
        confidence=np.array([0.9, 0.8, 0.7], dtype=np.float32),
        class_id=np.array([0, 1, 2]),
    )


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (W, H), "gray").save(folder / "a.png")
    Image.new("RGB", (W, H), "gray").save(folder / "negative.png")
    return folder


@pytest.mark.parametrize("name, kind, polygon", [("box", "polygon", True), ("ring", "rle", False), ("pair", "rle", False)])
def test_coco_segmentation_rules(name, kind, polygon):
    mask = _shapes()[name]
    segmentation, area = encode_segmentation(mask)
    assert area == int(mask.sum())
    assert isinstance(segmentation, list) == polygon, kind


def test_coco_export_loads_in_pycocotools_and_supervision(tmp_path, images):
    from pycocotools.coco import COCO

    det = _detections()
    path = images / "annotations.json"
    with CocoWriter(path, CLASSES) as writer:
        writer.add("a.png", H, W, det)
        writer.add("negative.png", H, W, sv.Detections.empty())
    coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["iscrowd"] for a in anns] == [0, 0, 0]
    assert [a["category_id"] for a in anns] == [1, 2, 3]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    for k, ann in enumerate(anns):  # exact masks, true areas
        assert np.array_equal(coco.annToMask(ann).astype(bool), det.mask[k])
        assert ann["area"] == int(det.mask[k].sum())
    assert coco.getAnnIds(imgIds=[2]) == []  # the negative stays, without annotations

    ours = CocoDataset(path)
    assert ours.classes == CLASSES
    _, back = ours[0]
    assert np.array_equal(back.mask, det.mask) and np.allclose(back.xyxy, det.xyxy)

    ds = sv.DetectionDataset.from_coco(str(images), str(path))
    assert ds.classes == CLASSES and len(ds) == 2
    loaded = ds.annotations[str((images / "a.png").resolve())]
    assert loaded.class_id.tolist() == [0, 1, 2] and loaded.data["iscrowd"].tolist() == [0, 0, 0]
    np.testing.assert_allclose(loaded.xyxy, det.xyxy)
    # RLE masks are exact in supervision; it fills polygons including their boundary pixels (IoU < 1)
    iou = masks_iou(loaded.mask, det.mask).diagonal()
    assert iou[1] == 1.0 and iou[2] == 1.0 and iou[0] > 0.8


def test_coco_writer_aborts_cleanly(tmp_path):
    path = tmp_path / "x.json"
    with pytest.raises(RuntimeError), CocoWriter(path, CLASSES) as writer:
        writer.add("a.png", H, W, _detections())
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def _yolo_roundtrip(tmp_path, images, segmentation):
    det = _detections()
    root = tmp_path / "yolo"
    save_yolo_labels(root / "labels" / "a.txt", det, H, W, segmentation=segmentation)
    save_yolo_labels(root / "labels" / "negative.txt", sv.Detections.empty(), H, W, segmentation=segmentation)
    save_data_yaml(root / "data.yaml", CLASSES, ["train"])
    ds = sv.DetectionDataset.from_yolo(str(images), str(root / "labels"), str(root / "data.yaml"), force_masks=segmentation)
    assert ds.classes == CLASSES
    assert len(ds.annotations[str(images / "negative.png")]) == 0
    return det, ds.annotations[str(images / "a.png")], load_yolo_labels(root / "labels" / "a.txt", H, W, segmentation)


def test_yolo_detect_roundtrip(tmp_path, images):
    det, theirs, ours = _yolo_roundtrip(tmp_path, images, segmentation=False)
    for loaded in (theirs, ours):
        assert loaded.class_id.tolist() == [0, 1, 2]
        np.testing.assert_allclose(loaded.xyxy, det.xyxy, atol=1e-3)


def test_yolo_segment_roundtrip(tmp_path, images):
    det, theirs, ours = _yolo_roundtrip(tmp_path, images, segmentation=True)
    shapes = _shapes()
    filled_ring = np.zeros((H, W), dtype=bool)
    filled_ring[10:34, 30:56] = True
    expected = np.stack([shapes["box"], filled_ring, shapes["pair"]])  # documented: holes filled, parts bridged
    for loaded in (theirs, ours):
        assert loaded.class_id.tolist() == [0, 1, 2]
        iou = masks_iou(loaded.mask, expected).diagonal()
        assert iou[0] == 1.0 and iou[1] == 1.0 and iou[2] > 0.9, iou  # exact, but for the bridge line


def test_voc_roundtrip(tmp_path, images):
    det = _detections()
    save_voc(tmp_path / "voc" / "a.xml", det, CLASSES, "a.png", H, W)
    save_voc(tmp_path / "voc" / "negative.xml", sv.Detections.empty(), CLASSES, "negative.png", H, W)
    ours = load_voc(tmp_path / "voc" / "a.xml", CLASSES)
    np.testing.assert_allclose(ours.xyxy, det.xyxy)
    assert ours.class_id.tolist() == [0, 1, 2]
    ds = sv.DetectionDataset.from_pascal_voc(str(images), str(tmp_path / "voc"))
    theirs = ds.annotations[str(images / "a.png")]
    assert [ds.classes[c] for c in theirs.class_id] == CLASSES
    np.testing.assert_allclose(theirs.xyxy, det.xyxy)
    assert len(ds.annotations[str(images / "negative.png")]) == 0


def test_mask_png_roundtrip(tmp_path):
    det = _detections()
    save_mask_png(tmp_path / "a.png", det, H, W)
    save_labels_txt(tmp_path / "labels.txt", CLASSES)
    class_map = load_mask_png(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P" and image.getpalette()[:3] == [0, 0, 0]
    assert np.array_equal(class_map, rasterize_semantic(det.mask, det.class_id, (H, W), det.confidence))
    back = semantic_to_detections(class_map)
    assert back.class_id.tolist() == [0, 1, 2]
    assert np.array_equal(back.mask, det.mask)  # these shapes do not overlap
    assert (tmp_path / "labels.txt").read_text().splitlines() == ["0 background", "1 car", "2 wheel", "3 dog"]


def test_exports_are_byte_identical(tmp_path):
    det = _detections()
    for run in ("one", "two"):
        with CocoWriter(tmp_path / run / "c.json", CLASSES) as writer:
            writer.add("a.png", H, W, det)
        save_mask_png(tmp_path / run / "m.png", det, H, W)
        save_voc(tmp_path / run / "v.xml", det, CLASSES, "a.png", H, W)
        save_yolo_labels(tmp_path / run / "y.txt", det, H, W, segmentation=True)
    for name in ("c.json", "m.png", "v.xml", "y.txt"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert json.loads((tmp_path / "one" / "c.json").read_text())["annotations"][0]["score"] == 0.9


def _edge_masks() -> dict[str, np.ndarray]:
    """Masks every writer must handle: 1 pixel, the whole image, a corner pinch (two 4-connected parts), the border."""
    masks = {name: np.zeros((H, W), dtype=bool) for name in ("pixel", "whole", "pinch", "border")}
    masks["pixel"][7, 9] = True
    masks["whole"][:] = True
    masks["pinch"][3:6, 3:6] = masks["pinch"][6:9, 6:9] = True
    masks["border"][H - 4 :, W - 6 :] = True
    return masks


def test_coco_edge_masks_are_exact_and_empty_masks_get_no_annotation(tmp_path):
    from pycocotools.coco import COCO

    edges = _edge_masks()
    masks = np.stack([np.zeros((H, W), dtype=bool), *edges.values()])
    det = sv.Detections(xyxy=np.tile([[1.0, 1.0, 5.0, 5.0]], (len(masks), 1)).astype(np.float32), mask=masks,
                        class_id=np.arange(len(masks)) % 3)
    with CocoWriter(tmp_path / "c.json", CLASSES) as writer:
        writer.add("a.png", H, W, det)
        writer.add("boxes.png", H, W, sv.Detections(xyxy=np.array([[2.0, 3.0, 12.5, 9.0]], dtype=np.float32),
                                                   class_id=np.array([1])))
    coco = COCO(str(tmp_path / "c.json"))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["id"] for a in anns] == [1, 2, 3, 4]  # the empty mask is left out, ids stay contiguous
    assert [a["category_id"] for a in anns] == [2, 3, 1, 2]
    for ann, mask in zip(anns, edges.values(), strict=True):
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask) and ann["area"] == int(mask.sum())
    assert [isinstance(a["segmentation"], list) for a in anns] == [True, True, False, True]  # the pinch is 2 parts
    (box,) = coco.loadAnns(coco.getAnnIds(imgIds=[2]))  # boxes only: the box as a polygon
    assert box["segmentation"] == [[2.0, 3.0, 12.5, 3.0, 12.5, 9.0, 2.0, 9.0]] and box["area"] == 63.0
    assert coco.annToMask(box).sum() > 0


def test_masks_kept_as_rle_give_the_same_exports():
    from grounded.formats.coco import detections_to_annotations
    from grounded.formats.label_studio import detection_results
    from grounded.formats.masks_png import detections_to_semantic
    from grounded.formats.yolo import detections_to_yolo_lines
    from grounded.utils.masks import RleMasks, mask_to_rle

    det = _detections()
    det.data["class_name"] = np.array(CLASSES)
    rles = RleMasks([mask_to_rle(m) for m in det.mask])
    assert rles.areas().tolist() == det.mask.reshape(3, -1).sum(1).tolist()
    boxes_only = sv.Detections(xyxy=det.xyxy, confidence=det.confidence, class_id=det.class_id, data=det.data)
    assert detections_to_annotations(boxes_only, 1, 1, H, W, rles) == detections_to_annotations(det, 1, 1, H, W)
    assert detections_to_yolo_lines(boxes_only, H, W, True, rles) == detections_to_yolo_lines(det, H, W, True)
    assert np.array_equal(detections_to_semantic(boxes_only, H, W, rles), detections_to_semantic(det, H, W))
    assert detection_results(boxes_only, H, W, rles) == detection_results(det, H, W)


def test_yolo_segments_of_edge_masks(tmp_path, images):
    edges = _edge_masks()
    masks = np.stack([np.zeros((H, W), dtype=bool), *edges.values()])
    det = sv.Detections(xyxy=sv.mask_to_xyxy(masks).astype(np.float32), mask=masks, class_id=np.zeros(len(masks), int))
    save_yolo_labels(tmp_path / "labels" / "a.txt", det, H, W, segmentation=True)
    assert len((tmp_path / "labels" / "a.txt").read_text().splitlines()) == len(edges)  # no line for the empty mask
    back = load_yolo_labels(tmp_path / "labels" / "a.txt", H, W, with_masks=True)
    iou = masks_iou(back.mask, np.stack(list(edges.values()))).diagonal()
    assert iou[0] == 1.0 and iou[1] == 1.0 and iou[3] == 1.0 and iou[2] > 0.8, iou  # the pinch gains its bridge


def test_brush_rle_from_mask_runs_equals_the_rgba_encoding():
    from grounded.formats.label_studio import encode_brush_rle, mask_to_brush_rle

    rng = np.random.default_rng(1)
    for mask in [*_edge_masks().values(), np.zeros((H, W), dtype=bool), rng.random((H, W)) < 0.3]:
        assert mask_to_brush_rle(mask) == encode_brush_rle(np.repeat(mask.astype(np.uint8).ravel() * 255, 4))
