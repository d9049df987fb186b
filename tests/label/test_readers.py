"""Every export of one label run, read back by readers we did not write: pycocotools (``annToMask`` on every
annotation, ``COCOeval`` of the file against itself), supervision's COCO / YOLO / VOC loaders, Ultralytics'
dataset loader, PIL for the mask PNGs, and the Label Studio SDK's converter where it is installed.

The run uses the fake predictor plus edge-case masks on every image that has detections: an empty mask
(dropped from every format and counted), a 1-pixel mask, the whole image, a mask with a hole, one in two
parts, two pixels touching only at a corner, and a part on the image border. One image holds only an empty
mask and so becomes a negative.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded.formats.files import flat_name, relative_from_flat_name
from grounded.formats.label_studio import IMAGE_PREFIX
from grounded.label import label
from grounded.label.records import read_record
from grounded.label.walk import walk_images
from grounded.testing.fake import FakeConceptSegmenter, FakePredictor, make_images
from grounded.utils.masks import rasterize_semantic, rle_to_mask

FORMATS = ["coco", "yolo", "yolo-seg", "voc", "masks", "label-studio"]
ONLY_EMPTY_HW = (30, 40)  # the image whose one detection has an empty mask
EDGE_CASES = ("empty", "pixel", "whole", "hole", "parts", "corner", "border")


def _edge_masks(height: int, width: int) -> dict[str, np.ndarray]:
    shapes = {name: np.zeros((height, width), dtype=bool) for name in EDGE_CASES}
    shapes["pixel"][height // 2, width // 3] = True
    shapes["whole"][:] = True
    shapes["hole"][4:14, 4:14] = True
    shapes["hole"][7:10, 7:10] = False
    shapes["parts"][20:24, 2:6] = True
    shapes["parts"][20:24, 10:14] = True
    shapes["corner"][5, 30] = shapes["corner"][6, 31] = True  # 4-connected: two parts
    shapes["border"][height - 3 :, width - 5 :] = True
    return shapes


def _edge_detections(height: int, width: int, names: list[str], classes: list[str]) -> sv.Detections:
    masks = _edge_masks(height, width)
    stack = np.stack([masks[n] for n in names])
    boxes = [sv.mask_to_xyxy(m[None])[0] + [0, 0, 1, 1] if m.any() else [2, 2, 10, 10] for m in stack]  # XYXY, end excluded
    class_id = np.arange(len(names)) % len(classes)
    return sv.Detections(
        xyxy=np.asarray(boxes, dtype=np.float32), mask=stack,
        confidence=np.linspace(0.29, 0.2, len(names)).astype(np.float32), class_id=class_id,
        data={"class_name": np.array([classes[c] for c in class_id]), "phrase": np.array([classes[c] for c in class_id]),
              "mask_score": np.full(len(names), 0.9, dtype=np.float32)},
    )


class EdgeCases(FakeConceptSegmenter):
    """The fake backend's detections plus every edge-case mask (see the module docstring)."""

    def _detect(self, image, ontology):
        found = super()._detect(image, ontology)
        classes = [c.name for c in ontology.classes]
        if image.shape[:2] == ONLY_EMPTY_HW:
            return _edge_detections(*ONLY_EMPTY_HW, ["empty"], classes)
        if len(found) == 0:
            return found
        return sv.Detections.merge([found, _edge_detections(*image.shape[:2], list(EDGE_CASES), classes)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(images root, run folder, summary, {relative: [(class name, mask, confidence)] of the records' non-empty
    masks}, {relative: split})."""
    base = tmp_path_factory.mktemp("readers")
    root = base / "images"
    make_images(root, 8)
    Image.fromarray(np.full((*ONLY_EMPTY_HW, 3), 90, dtype=np.uint8)).save(root / "only_empty.png")
    out = base / "out"
    summary = label(root, "car, wheel, dog", out, predictor=FakePredictor(model=EdgeCases()), formats=FORMATS, progress=False,
                    preview=0)
    expected, dropped = {}, 0
    for rel in walk_images(root):
        masks = [(d["class_name"], rle_to_mask(d["mask"]), d["confidence"]) for d in read_record(out, rel)["detections"]]
        expected[rel] = [item for item in masks if item[1].any()]
        dropped += len(masks) - len(expected[rel])
    split_of = {rel: split for split in summary.splits for rel in _split_members(out, split)}
    assert dropped > 1 and summary.dropped_empty_masks == dropped
    return root, out, summary, expected, split_of


def _split_members(out: Path, split: str) -> set[str]:
    return {image["file_name"] for image in json.loads((out / "coco" / f"{split}.json").read_text())["images"]}


def _classes(items) -> list[str]:
    return sorted(item[0] for item in items)


def _same_masks(got, want) -> bool:
    """Equal as multisets of (class name, exact mask)."""
    def key(item):
        return item[0], item[1].shape, np.packbits(item[1]).tobytes()
    return Counter(map(key, got)) == Counter(map(key, want))


# ------------------------------------------------------------------------------------------- readers
def _pycocotools(out, root, split):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "coco" / f"{split}.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    found = {}
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        found[image["file_name"]] = [(names[a["category_id"]], coco.annToMask(a).astype(bool)) for a in anns]
        for ann, (_, mask) in zip(anns, found[image["file_name"]], strict=True):
            assert ann["iscrowd"] == 0 and ann["area"] == int(mask.sum()) and ann["segmentation"], ann["id"]
    return found


def _sv_coco(out, root, split):
    ds = sv.DetectionDataset.from_coco(str(root), str(out / "coco" / f"{split}.json"), force_masks=True)
    return {Path(path).relative_to(root).as_posix(): [(ds.classes[c], None) for c in det.class_id]
            for path, _, det in ds}


def _sv_yolo(folder, segment):
    def read(out, root, split):
        base = out / folder
        ds = sv.DetectionDataset.from_yolo(str(base / "images" / split), str(base / "labels" / split),
                                           str(base / "data.yaml"), force_masks=segment)
        return {relative_from_flat_name(Path(path).name): [(ds.classes[c], None) for c in det.class_id]
                for path, _, det in ds}
    return read


ULTRALYTICS = """
import json, sys
from pathlib import Path
from ultralytics.data import YOLODataset
from ultralytics.data.utils import check_det_dataset
found = {}
for data_yaml, task in zip(sys.argv[1::2], sys.argv[2::2]):
    data = check_det_dataset(data_yaml)
    for split in ("train", "val", "test"):
        if split in data:
            ds = YOLODataset(img_path=data[split], data=data, task=task, augment=False, imgsz=64)
            assert task != "segment" or all(len(lb["segments"]) == len(lb["cls"]) for lb in ds.labels)
            found[f"{task} {split}"] = {Path(lb["im_file"]).name: [data["names"][int(c)] for c in lb["cls"].ravel()]
                                       for lb in ds.labels}
print(json.dumps(found))
"""
YOLO_TASKS = {"yolo": "detect", "yolo-seg": "segment"}


@functools.cache
def _ultralytics_labels(out: Path) -> dict[str, dict[str, list[str]]]:
    """{"<task> <split>": {image file name: class names}} from Ultralytics' dataset loader, in a child process:
    importing ultralytics changes process-wide settings (OMP_NUM_THREADS, OpenCV threads) other tests must not
    inherit."""
    if importlib.util.find_spec("ultralytics") is None:  # found, not imported (see above)
        pytest.skip("ultralytics not installed (a test-only reader, AGPL): "
                    "pip install --no-deps ultralytics psutil polars ultralytics-thop")
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(out.parent / "ultralytics-settings"))
    pairs = [str(v) for folder, task in YOLO_TASKS.items() for v in (out / folder / "data.yaml", task)]
    done = subprocess.run([sys.executable, "-c", ULTRALYTICS, *pairs], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ultralytics(folder):
    def read(out, root, split):
        labels = _ultralytics_labels(out)[f"{YOLO_TASKS[folder]} {split}"]
        return {relative_from_flat_name(name): [(c, None) for c in classes] for name, classes in labels.items()}
    return read


def _sv_voc(out, root, split):
    stems = set((out / "voc" / "ImageSets" / "Main" / f"{split}.txt").read_text().split())
    ds = sv.DetectionDataset.from_pascal_voc(str(out / "voc" / "JPEGImages"), str(out / "voc" / "Annotations"))
    return {relative_from_flat_name(Path(path).name): [(ds.classes[c], None) for c in det.class_id]
            for path, _, det in ds if Path(path).stem in stems}


LABEL_STUDIO = """
import sys
from pathlib import Path
from urllib.parse import unquote
from label_studio_sdk.converter import Converter
config, tasks, root, work = sys.argv[1:]
converter = Converter(config, project_dir=root, local_files_resolver=lambda d: str(Path(root) / unquote(d)))
converter.convert(tasks, str(Path(work) / "coco"), "COCO", is_dir=False)  # polygons
(Path(work) / "brush").mkdir(exist_ok=True)
converter.convert(tasks, str(Path(work) / "brush"), "BRUSH_TO_NUMPY", is_dir=False)  # brushes
"""


def _label_studio(out, root, split):
    return {rel: items for rel, items in _label_studio_masks(out, root).items() if rel in _split_members(out, split)}


@functools.cache
def _label_studio_masks(out: Path, root: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{image: [(class name, mask)]} of every task, its pre-annotations accepted, through the SDK's converter."""
    if importlib.util.find_spec("label_studio_sdk") is None:
        pytest.skip("label-studio-sdk not installed (it pins older numpy and opencv): "
                    "pip install --no-deps label-studio-sdk==2.1.2 ijson ujson lxml nltk appdirs")
    from pycocotools.coco import COCO

    tasks = json.loads((out / "label-studio" / "tasks.json").read_text())
    work = out.parent / "label-studio-sdk"
    work.mkdir(exist_ok=True)
    for k, task in enumerate(tasks):  # accept every pre-annotation, as a person would in Label Studio
        task["id"] = k + 1
        task["annotations"] = [{"id": k + 1, "result": task["predictions"][0]["result"]}]
    (work / "tasks.json").write_text(json.dumps(tasks))
    done = subprocess.run([sys.executable, "-c", LABEL_STUDIO, str(out / "label-studio" / "label_config.xml"),
                           str(work / "tasks.json"), str(root), str(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]  # in a child: the SDK's imports stay out of this process
    relative = [unquote(t["data"]["image"][len(IMAGE_PREFIX):]) for t in tasks]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(work / "coco" / "result.json"))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    found = {}
    for image in coco.loadImgs(coco.getImgIds()):
        rel = relative[image["id"]]
        found[rel] = [(names[a["category_id"]], coco.annToMask(a).astype(bool))
                      for a in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))]
    for path in sorted((work / "brush").glob("*.npy")):  # task-<id>-annotation-<id>-by-<who>-brush-<label>-<k>.npy
        task_id, name = int(path.name.split("-")[1]), path.stem.split("-brush-")[1].rsplit("-", 1)[0]
        found[relative[task_id - 1]].append((name, np.load(path) > 0))
    return found


EXACT = {"pycocotools", "label-studio-sdk"}  # readers that give back our masks pixel for pixel
READERS = {
    "pycocotools": _pycocotools,
    "supervision-coco": _sv_coco,
    "supervision-yolo": _sv_yolo("yolo", False),
    "supervision-yolo-seg": _sv_yolo("yolo-seg", True),
    "ultralytics-yolo": _ultralytics("yolo"),
    "ultralytics-yolo-seg": _ultralytics("yolo-seg"),
    "supervision-voc": _sv_voc,
    "label-studio-sdk": _label_studio,
}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_export_reads_back_with_the_records_counts(run, reader):
    root, out, summary, expected, split_of = run
    for split in summary.splits:
        want = {rel: items for rel, items in expected.items() if split_of[rel] == split}
        got = READERS[reader](out, root, split)
        assert sorted(got) == sorted(want), (split, reader)
        for rel in want:
            assert _classes(got[rel]) == _classes(want[rel]), (rel, reader)
            if reader in EXACT:
                assert _same_masks(got[rel], want[rel]), (rel, reader)
    assert sum(len(v) for v in expected.values()) == sum(summary.instances.values())
    assert expected["only_empty.png"] == [] and summary.empty >= 1


def test_mask_pngs_hold_the_records_masks(run):
    root, out, summary, expected, split_of = run
    classes = list(summary.instances)
    for rel, items in expected.items():
        with Image.open(out / "masks" / "annotations" / split_of[rel] / f"{Path(flat_name(rel)).stem}.png") as image:
            assert image.mode == "P"
            class_map = np.asarray(image)
        masks = np.stack([m for _, m, _ in items]) if items else np.zeros((0, *class_map.shape), dtype=bool)
        class_ids = np.array([classes.index(name) for name, _, _ in items], dtype=int)
        confidence = np.array([c for _, _, c in items])
        assert np.array_equal(class_map, rasterize_semantic(masks, class_ids, class_map.shape, confidence)), rel


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_coco_file_scores_1_against_itself(run, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, out, summary, expected, split_of = run
    for split in summary.splits:
        with contextlib.redirect_stdout(io.StringIO()):
            truth = COCO(str(out / "coco" / f"{split}.json"))
            results = []
            for ann in truth.loadAnns(truth.getAnnIds()):
                result = {"image_id": ann["image_id"], "category_id": ann["category_id"], "score": ann["score"]}
                if iou_type == "segm":
                    result["segmentation"] = truth.annToRLE(ann)
                else:
                    result["bbox"] = ann["bbox"]
                results.append(result)
            evaluation = COCOeval(truth, truth.loadRes(results), iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        assert results, split
        assert evaluation.stats[0] == pytest.approx(1.0) and evaluation.stats[1] == pytest.approx(1.0), (split, iou_type)
        assert evaluation.stats[8] == pytest.approx(1.0)  # recall at 100 detections
