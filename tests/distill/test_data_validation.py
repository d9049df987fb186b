"""External datasets are validated before training: bad images and annotations are skipped and named, or
refused with ``strict``; never a traceback, never unbounded memory. EXIF-rotated images align with their
labels through every format ``grounded label`` exports."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded.errors import InputError
from grounded.formats.voc import load_voc
from grounded.utils.images import image_size, load_image
from grounded.utils.masks import mask_to_rle

N = 6  # images in the generated dataset (48 x 48, two annotations each)
REPO = Path(__file__).resolve().parents[2]


def _coco(root: Path) -> tuple[Path, dict]:
    """N 48 x 48 images, each with a square (polygon) and a ring (RLE); file_name ``images/imgNNN.png``."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    ring = np.zeros((48, 48), dtype=bool)
    ring[20:40, 20:40] = True
    ring[26:34, 26:34] = False
    for i in range(N):
        Image.new("RGB", (48, 48), (i * 30, 90, 90)).save(root / "images" / f"img{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"images/img{i:03d}.png", "width": 48, "height": 48})
        annotations.append({"id": 2 * i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]], "bbox": [2, 2, 10, 10], "area": 100})
        annotations.append({"id": 2 * i + 2, "image_id": i + 1, "category_id": 2, "iscrowd": 0,
                            "segmentation": mask_to_rle(ring), "bbox": [20, 20, 20, 20], "area": int(ring.sum())})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "ring"}]}
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path, data


def _first_ann(data: dict, **change) -> None:
    data["annotations"][0].update(change)


def _remove_image(root: Path, data: dict) -> None:
    (root / data["images"][1]["file_name"]).unlink()


def _truncate_image(root: Path, data: dict) -> None:
    path = root / data["images"][1]["file_name"]
    path.write_bytes(path.read_bytes()[:20])


def _size(data: dict, **change) -> None:
    data["images"][1].update(change)


COCO_CASES = [
    # (id, how to spoil the dataset, skipped images, skipped annotations, words of the first named problem)
    ("polygon-strings", lambda r, d: _first_ann(d, segmentation=[[1, "a", 5, 1, 5, 5]]), 0, 1, "non-number, 'a'"),
    ("polygon-null", lambda r, d: _first_ann(d, segmentation=[[1, None, 5, 1, 5, 5]]), 0, 1, "non-number, None"),
    ("bare-number", lambda r, d: _first_ann(d, segmentation=7), 0, 1, "segmentation must be polygons"),
    ("garbage-rle", lambda r, d: _first_ann(d, segmentation={"size": [48, 48], "counts": "~~~~"}), 0, 1, "garbage"),
    ("rle-wrong-size", lambda r, d: _first_ann(d, segmentation={**d["annotations"][1]["segmentation"], "size": [96, 96]}),
     0, 1, "RLE size [96, 96] differs"),
    ("rle-short", lambda r, d: _first_ann(d, segmentation={"size": [48, 48], "counts": [5, 10]}), 0, 1, "RLE runs cover 15"),
    ("nan-polygon", lambda r, d: _first_ann(d, segmentation=[[1, math.nan, 5, 1, 5, 5]]), 0, 1, "NaN or infinite"),
    ("huge-polygon", lambda r, d: _first_ann(d, segmentation=[[1, 1, 1e12, 1, 5, 5]]), 0, 1, "far outside"),
    ("nan-bbox", lambda r, d: _first_ann(d, bbox=[1, 1, math.nan, 4]), 0, 1, "NaN or infinite"),
    ("missing-image", _remove_image, 1, 0, "img001.png"),
    ("truncated-header", _truncate_image, 1, 0, "img001.png"),
    ("wrong-size", lambda r, d: _size(d, width=64), 1, 0, "but the JSON says 48 x 64"),
    ("two-problems", lambda r, d: (_first_ann(d, segmentation=7), _remove_image(r, d)), 1, 1, "segmentation must be"),
]


@pytest.mark.parametrize("spoil, images, annotations, words", [c[1:] for c in COCO_CASES], ids=[c[0] for c in COCO_CASES])
def test_bad_coco_is_skipped_and_named_or_refused(tmp_path, caplog, spoil, images, annotations, words):
    from grounded.distill.data import open_dataset

    path, data = _coco(tmp_path)
    spoil(tmp_path, data)
    path.write_text(json.dumps(data, allow_nan=True))

    splits = open_dataset(path)
    skipped = splits.info["skipped"]
    assert (skipped["images"], skipped["annotations"]) == (images, annotations)
    assert words in skipped["examples"][0] and words in caplog.text
    assert len(splits.train) + len(splits.val) == N - images
    for view in (splits.train, splits.val):  # every remaining item decodes, bad annotations left out
        for i in range(len(view)):
            assert view.semantic(i).shape == view.image(i).shape[:2]
    assert sum(len(v.detections(i)) for v in (splits.train, splits.val) for i in range(len(v))) == 2 * N - 2 * images - annotations

    with pytest.raises(InputError, match="unusable") as info:
        open_dataset(path, strict=True)
    assert words in str(info.value) and "strict" in str(info.value)


def test_missing_image_message_names_the_file_and_the_fix(tmp_path):
    from grounded.distill.data import open_dataset

    path, data = _coco(tmp_path / "data")
    (tmp_path / "data" / "images").rename(tmp_path / "pictures")  # the images are not where the JSON says
    with pytest.raises(InputError) as info:  # nothing usable: refused before training, naming files
        open_dataset(path)
    message = str(info.value)
    assert "no usable training image" in message and "images/img000.png" in message
    assert "correct its file_name" in message and "images_root=" not in message


YOLO_CASES = [
    ("odd", "0 0.1 0.1 0.9 0.1 0.5", "5 coordinates"),
    ("nan", "0 0.1 nan 0.9 0.1 0.5 0.8", "NaN or infinite"),
    ("inf", "1 0.1 0.1 inf 0.1 0.5 0.8", "NaN or infinite"),
    ("huge", "0 0.1 0.1 1e30 0.1 0.5 0.8", "far outside"),
    ("class", "7 0.1 0.1 0.9 0.1 0.5 0.8", "class 7 is outside"),
    ("words", "0 0.1 0.1 ten 0.1 0.5 0.8", "expected 'class x y ...' numbers"),
]


def _yolo(root: Path, bad_line: str) -> Path:
    """A 4-image YOLO-seg dataset; image 0's label file gets ``bad_line`` after one good line."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (40, 30), "gray").save(root / "images" / split / f"{k}.png")
            lines = ["1 0.1 0.1 0.6 0.1 0.6 0.6"] + ([bad_line] if (split, k) == ("train", 0) else [])
            (root / "labels" / split / f"{k}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: {0: disc, 1: square}\n")
    return root


@pytest.mark.parametrize("line, words", [c[1:] for c in YOLO_CASES], ids=[c[0] for c in YOLO_CASES])
def test_bad_yolo_lines_are_skipped_and_named_or_refused(tmp_path, line, words):
    from grounded.distill.data import open_dataset

    root = _yolo(tmp_path, line)
    splits = open_dataset(root)
    assert splits.info["skipped"]["annotations"] == 1 and splits.info["skipped"]["images"] == 0
    assert words in splits.info["skipped"]["examples"][0] and "0.txt:2" in splits.info["skipped"]["examples"][0]
    assert len(splits.train.detections(0)) == 1  # the good line stays
    with pytest.raises(InputError, match="unusable"):
        open_dataset(root, strict=True)


def test_unreadable_yolo_label_file_skips_its_image(tmp_path):
    from grounded.distill.data import open_dataset

    root = _yolo(tmp_path, "0 0.1 0.1 0.6 0.1 0.6 0.6")
    (root / "labels" / "train" / "1.txt").write_bytes(b"\xff\xfe\x00garbage")
    splits = open_dataset(root)
    assert splits.info["skipped"]["images"] == 1 and "cannot be read as text" in splits.info["skipped"]["examples"][0]
    assert len(splits.train) == 1


def test_mask_png_problems(tmp_path):
    from grounded.distill.data import open_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "classes.txt").write_text("disc\n")
    for k in range(5):
        Image.new("RGB", (20, 10)).save(tmp_path / "images" / f"{k}.png")
    Image.new("L", (20, 10)).save(tmp_path / "masks" / "0.png")
    Image.new("L", (20, 10)).save(tmp_path / "masks" / "1.png")
    Image.new("L", (10, 20)).save(tmp_path / "masks" / "2.png")  # wrong size
    (tmp_path / "masks" / "3.png").write_bytes(b"")  # empty
    # 4.png: no mask at all
    splits = open_dataset(tmp_path)
    assert splits.info["skipped"]["images"] == 3 and len(splits.train) + len(splits.val) == 2
    text = "\n".join(splits.info["skipped"]["examples"])
    assert "2.png' is 20 x 10 (H x W) but its image shows 10 x 20" in text and "empty file" in text and "has no mask" in text


def test_nan_and_huge_coordinates_never_allocate(tmp_path):
    """What once drove RSS to 24 GB: a NaN / 1e12 polygon (COCO) and a NaN line (YOLO), under a 3 GB cap."""
    coco, data = _coco(tmp_path / "coco")
    data["annotations"][0]["segmentation"] = [[1, math.nan, 5, 1, 5, 5]]
    data["annotations"][1]["segmentation"] = [[1, 1, 1e12, 1, 1e12, 1e12]]
    coco.write_text(json.dumps(data, allow_nan=True))
    yolo = _yolo(tmp_path / "yolo", "0 0.1 nan 0.9 0.1 0.5 0.8")
    script = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "from grounded.distill.data import open_dataset\n"
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = open_dataset(path)\n"
        "    n = sum(len(v.detections(i)) + int(v.semantic(i).sum() >= 0) for v in (s.train, s.val) for i in range(len(v)))\n"
        "    print(s.info['skipped']['annotations'], n)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(coco), str(yolo)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split()[0] for line in done.stdout.split("\n") if line] == ["2", "1"]


# ------------------------------------------------------------------------------------------------ EXIF
class RedPredictor:
    """Finds the red pixels of the image it is given (display orientation, as the label runner loads it)."""

    def describe(self) -> dict:
        return {"predictor": "RedPredictor", "version": 1}

    def set_image(self, image) -> None:  # noqa: ANN001
        self.image = load_image(image)

    def segment(self, prompt, **options) -> sv.Detections:  # noqa: ANN001, ANN003
        mask = (self.image[..., 0] > 150) & (self.image[..., 1] < 100)
        return sv.Detections(xyxy=sv.mask_to_xyxy(mask[None]).astype(np.float32), mask=mask[None],
                             confidence=np.array([0.9], np.float32), class_id=np.array([0]),
                             data={"class_name": np.array(["red"]), "phrase": np.array(["red"]),
                                   "mask_score": np.array([0.9], np.float32)})


def _rotated(path: Path, orientation: int, fmt: str) -> None:
    """A 40 x 64 (H x W) stored image, red block near the stored top-left, shown turned by ``orientation``."""
    arr = np.full((40, 64, 3), 90, np.uint8)
    arr[4:16, 6:30] = (230, 20, 20)
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.fixture(scope="module")
def exif_run(tmp_path_factory) -> Path:
    from grounded.label import label

    root = tmp_path_factory.mktemp("exif")
    photos = root / "photos"
    photos.mkdir()
    _rotated(photos / "six.jpg", 6, "JPEG")
    _rotated(photos / "eight.png", 8, "PNG")
    _rotated(photos / "three.jpg", 3, "JPEG")
    _rotated(photos / "upright.png", 1, "PNG")
    label(photos, "red", root / "out", predictor=RedPredictor(), formats=["coco", "yolo", "yolo-seg", "voc", "masks"],
          split=(0.5, 0.5), progress=False, preview=0)
    return root / "out"


@pytest.mark.parametrize("layout", ["run", "yolo-seg", "yolo", "masks"])
def test_exif_rotated_images_align_with_labels_in_every_format(exif_run, layout):
    from grounded.distill.data import open_dataset

    splits = open_dataset(exif_run if layout == "run" else exif_run / layout)
    assert splits.info["skipped"]["images"] == 0 and splits.info["skipped"]["annotations"] == 0
    seen = 0
    for view in (splits.train, splits.val):
        for i in range(len(view)):
            image, label_map = view.image(i), view.semantic(i)
            red = (image[..., 0] > 150) & (image[..., 1] < 100)
            assert label_map.shape == red.shape == image_size(view.image_path(i))
            iou = (red & (label_map > 0)).sum() / (red | (label_map > 0)).sum()
            assert iou > 0.85, (layout, view.image_path(i), iou)  # misaligned (stored orientation) gives 0
            seen += 1
    assert seen == 4


def test_exif_rotated_images_align_in_voc(exif_run):
    for xml in sorted((exif_run / "voc" / "Annotations").glob("*.xml")):
        image_path = next((exif_run / "voc" / "JPEGImages").glob(xml.stem + ".*"))
        image = load_image(image_path)
        red = (image[..., 0] > 150) & (image[..., 1] < 100)
        box = load_voc(xml, ["red"]).xyxy[0]
        np.testing.assert_allclose(box, sv.mask_to_xyxy(red[None])[0], atol=1.5)


def _spoil_file(root: Path, name: str, content: bytes) -> Path:
    (root / name).write_bytes(content)
    return root


DATASET_FILE_CASES = [
    # (id, layout, file, content, words of the error)
    ("yaml-latin1", "yolo", "data.yaml", b"train: images/train\nnames: [caf\xe9]\n", "is not UTF-8 text"),
    ("yaml-broken", "yolo", "data.yaml", b"train: [images/train\nnames: [a]\n", "is not valid YAML"),
    ("yaml-list", "yolo", "data.yaml", b"- a\n- b\n", "expected a mapping"),
    ("yaml-names", "yolo", "data.yaml", b"train: images/train\nnames: 7\n", "'names' (the class names)"),
    ("yaml-train", "yolo", "data.yaml", b"train: [1, 2]\nnames: [a, b]\n", "'train' must be a folder path"),
    ("run-json", "run", "run.json", b"{\"images_root\": ", "is not valid JSON"),
    ("coco-garbage", "coco", "annotations.json", b"\x00\x01 not json", "is not valid JSON"),
    ("coco-image-str", "coco", "annotations.json", b'{"images": ["a.png"], "annotations": []}', "images[0] must be a mapping"),
    ("coco-category-id", "coco", "annotations.json",
     b'{"images": [], "annotations": [], "categories": [{"name": "x"}]}', "categories[0] needs an integer 'id'"),
    ("coco-image-id-list", "coco", "annotations.json",
     b'{"images": [{"id": [1], "file_name": "a.png"}], "annotations": []}', "images[0] needs an integer 'id'"),
    ("coco-annotations-dict", "coco", "annotations.json", b'{"images": [], "annotations": {"a": 1}}',
     "'annotations' must be a list"),
]


@pytest.mark.parametrize("layout, name, content, words", [c[1:] for c in DATASET_FILE_CASES],
                         ids=[c[0] for c in DATASET_FILE_CASES])
def test_broken_dataset_files_are_clear_errors(tmp_path, layout, name, content, words):
    from grounded.distill.data import open_dataset

    if layout == "yolo":
        root = _yolo(tmp_path, "0 0.1 0.1 0.6 0.1 0.6 0.6")
    elif layout == "run":
        root = tmp_path
        (root / "coco").mkdir()
    else:
        root = _coco(tmp_path)[0].parent
    _spoil_file(root, name, content)
    with pytest.raises(InputError, match=re.escape(words)) as info:
        open_dataset(root)
    assert name in str(info.value) and len(str(info.value)) < 500
