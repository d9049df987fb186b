"""Datasets: every accepted layout reads the same scenes the same way; seeded splits; the real car_parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grounded.distill.data import open_dataset, seeded_split
from grounded.errors import InputError

# Not imported from conftest: with several conftest.py files, `import conftest` finds whichever loaded first.
CLASSES = ["disc", "square"]  # the generated scenes' classes (tests/distill/conftest.py)
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize("layout", ["run", "masks", "yolo-seg"])
def test_label_run_exports_read_alike(label_run, layout):
    splits = open_dataset(label_run if layout == "run" else label_run / layout)
    assert splits.class_names == CLASSES
    reference = open_dataset(label_run)
    assert (len(splits.train), len(splits.val)) == (12, 4) and splits.info["split"] == "given"
    name = splits.train.image_path(0).name
    j = [reference.train.image_path(i).name for i in range(len(reference.train))].index(name)
    ours, truth = splits.train.semantic(0), reference.train.semantic(j)
    agree = (ours == truth).mean()
    assert agree > (0.97 if layout == "yolo-seg" else 0.999)  # YOLO polygons trace pixel edges: near-exact
    dets = splits.train.detections(0)
    assert sorted(dets.class_id.tolist()) == [0, 1] and dets.mask.shape == (2, 48, 48)
    assert splits.train.image(0).shape == (48, 48, 3)


@pytest.mark.parametrize("path", ["folder", "annotations.json"])
def test_plain_coco_is_split_by_seed(coco_dataset, path):
    splits = open_dataset(coco_dataset if path == "folder" else coco_dataset / path, val_fraction=0.25, seed=1)
    assert splits.class_names == CLASSES and (len(splits.train), len(splits.val)) == (12, 4)
    assert splits.info["split"] == "seeded 1"
    assert set(np.unique(splits.val.semantic(0)).tolist()) == {0, 1, 2}


def test_seeded_split_is_reproducible_and_disjoint():
    a, b = seeded_split(10, 0.2, seed=3), seeded_split(10, 0.2, seed=3)
    assert a == b and len(a[1]) == 2 and not set(a[0]) & set(a[1]) and sorted(a[0] + a[1]) == list(range(10))
    assert seeded_split(10, 0.2, seed=4) != a
    with pytest.raises(InputError):
        seeded_split(1, 0.2, 0)


def test_unknown_folder_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="not a dataset"):
        open_dataset(tmp_path)
    with pytest.raises(InputError, match="not found"):
        open_dataset(tmp_path / "missing")


CAR_PARTS = SHARED_DATA / "car_parts" / "train"


@pytest.mark.skipif(not CAR_PARTS.is_dir(), reason="../shared/data/car_parts is absent")
def test_real_car_parts_loads():
    splits = open_dataset(CAR_PARTS, 0.2, seed=0)
    assert (len(splits.train), len(splits.val)) == (320, 80)
    assert len(splits.class_names) == 18 and "_background_" not in splits.class_names and "wheel" in splits.class_names
    semantic = splits.train.semantic(0)
    assert semantic.shape == (512, 512) and semantic.max() <= 18 and np.any(semantic > 0)
