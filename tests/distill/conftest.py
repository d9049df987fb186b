"""Fixtures: a small generated dataset of discs and squares on noise, written as COCO and as mask PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grounded.utils.masks import mask_to_rle

# Tiny models gain nothing from threads, and on a shared CPU OpenMP threads oversubscribe the cores (5x slower).
torch.set_num_threads(1)

CLASSES = ["disc", "square"]
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def make_scene(rng: np.random.Generator, size: int = 48) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """An RGB noise image with one red disc and one blue square; returns (image, masks, class ids)."""
    image = (rng.random((size, size, 3)) * 60 + 60).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.integers(10, size - 10), rng.integers(10, size // 2), rng.integers(5, 9)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    sy, sx, s = rng.integers(2, size - 14), rng.integers(size // 2, size - 14), rng.integers(7, 12)
    square = np.zeros((size, size), dtype=bool)
    square[sy : sy + s, sx : sx + s] = True
    square &= ~disc
    image[disc] = (220, 40, 40)
    image[square] = (40, 60, 220)
    return image, [disc, square], [0, 1]


def write_coco(root: Path, n: int = 16, size: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        image, masks, classes = make_scene(rng, size)
        Image.fromarray(image).save(root / "images" / f"img{i:03d}.png")
        images.append({"id": i + 1, "file_name": f"images/img{i:03d}.png", "width": size, "height": size})
        for mask, cls in zip(masks, classes, strict=True):
            ys, xs = np.nonzero(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "segmentation": mask_to_rle(mask), "area": int(mask.sum()), "iscrowd": False,
                                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


@pytest.fixture(scope="session")
def coco_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco")
    write_coco(root)
    return root


def scenes(n: int = 16, size: int = 48, seed: int = 0):
    """The same scenes write_coco draws, as (name, image, sv.Detections)."""
    import supervision as sv

    rng = np.random.default_rng(seed)
    for i in range(n):
        image, masks, classes = make_scene(rng, size)
        mask = np.stack(masks)
        yield f"img{i:03d}", image, sv.Detections(xyxy=sv.mask_to_xyxy(mask).astype(np.float32), mask=mask,
                                                  class_id=np.array(classes), data={"class_name": np.array(CLASSES)})


def write_label_exports(root: Path, n: int = 16, size: int = 48) -> Path:
    """What ``grounded label`` writes: run.json, coco/{train,val}.json, masks/ and yolo-seg/ exports."""
    from grounded.formats.masks_png import save_labels_txt, save_mask_png
    from grounded.formats.yolo import save_data_yaml, save_yolo_labels

    images_root = root / "photos"
    images_root.mkdir(parents=True)
    coco = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    for i, (name, image, dets) in enumerate(scenes(n, size)):
        split = "val" if i % 4 == 0 else "train"
        Image.fromarray(image).save(images_root / f"{name}.png")
        coco[split]["images"].append({"id": i + 1, "file_name": f"{name}.png", "width": size, "height": size})
        for mask, cls in zip(dets.mask, dets.class_id, strict=True):
            coco[split]["annotations"].append({"id": 100 * i + int(cls) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                                               "segmentation": mask_to_rle(mask), "area": int(mask.sum()), "iscrowd": 0})
        for fmt, sub in (("masks", "annotations"), ("yolo-seg", "labels")):
            (root / fmt / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / fmt / sub / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / fmt / "images" / split / f"{name}.png")
        save_mask_png(root / "masks" / "annotations" / split / f"{name}.png", dets, size, size)
        save_yolo_labels(root / "yolo-seg" / "labels" / split / f"{name}.txt", dets, size, size, segmentation=True)
    save_labels_txt(root / "masks" / "labels.txt", CLASSES)
    save_data_yaml(root / "yolo-seg" / "data.yaml", CLASSES, ["train", "val"])
    (root / "coco").mkdir()
    for split, data in coco.items():
        data["categories"] = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
        (root / "coco" / f"{split}.json").write_text(json.dumps(data))
    (root / "run.json").write_text(json.dumps({"format_version": 1, "images_root": str(images_root), "classes": CLASSES}))
    return root


@pytest.fixture(scope="session")
def label_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_label_exports(tmp_path_factory.mktemp("label_run"))
