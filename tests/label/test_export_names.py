"""Export names never collide (the path is kept, escaped), and a full disk while exporting loses nothing."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded.errors import DiskFullError
from grounded.formats import files
from grounded.formats.files import export_names, flat_name, relative_from_flat_name
from grounded.label import export_run, label
from grounded.label.export import FORMATS
from grounded.testing.fake import FakePredictor

CLASSES = "car, wheel"
FIVE = ["a.jpg", "a.png", "a_jpg.jpg", "sub/a.jpg", "sub__a.jpg"]


@pytest.mark.parametrize(
    "relatives",
    [
        FIVE,
        ["x.jpg", "x.jpeg", "x.JPG", "x_jpeg.jpg", "x.jpg.jpg"],
        ["a/b/c.png", "a__b/c.png", "a/b__c.png", "a__b__c.png", "a%2Fb%2Fc.png", "a%b/c.png"],
        ["dot.in.name.png", "dot/in.name.png", "dot.in/name.png", "ünï cödé/ç.webp"],
    ],
    ids=["issue", "extensions", "folders", "dots-unicode"],
)
def test_export_names_are_unique_and_reversible(relatives):
    names = export_names(relatives)
    assert len(set(names.values())) == len(relatives)
    assert len({Path(n).stem for n in names.values()}) == len(relatives)  # labels are matched by stem
    for rel, name in names.items():
        assert "/" not in name and Path(name).suffix == Path(rel).suffix
        assert relative_from_flat_name(name) == rel


def test_overlong_names_are_shortened_uniquely():
    deep = "/".join(["folder" * 8] * 8) + "/img.jpg"
    name = flat_name(deep)
    assert len(name.encode()) <= 255 and name.endswith(".jpg") and name != flat_name(deep.replace("img", "imh"))


@pytest.fixture
def five_images(tmp_path) -> Path:
    root = tmp_path / "images"
    for k, rel in enumerate(FIVE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((30 + k, 40, 3), 40 * k, dtype=np.uint8)  # each image its own size: told apart below
        Image.fromarray(pixels).save(root / rel)
    return root


def test_five_colliding_names_give_five_images_in_every_format(five_images, tmp_path):
    out = tmp_path / "out"
    summary = label(five_images, CLASSES, out, predictor=FakePredictor(), formats=list(FORMATS), split=(1.0, 0.0),
                    progress=False, preview=0)
    assert summary.labelled == 5
    heights = {rel: 30 + k for k, rel in enumerate(FIVE)}

    coco = json.loads((out / "coco" / "train.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(FIVE)

    def check_images(folder: Path) -> dict[str, Path]:
        """Every image of a flat folder is one of the five, once, and shows that image's pixels."""
        found = {relative_from_flat_name(p.name): p for p in folder.iterdir()}
        assert sorted(found) == sorted(FIVE)
        for rel, path in found.items():
            assert Path(os.path.realpath(path)) == (five_images / rel).resolve()
            assert Image.open(path).size == (40, heights[rel])
        return found

    for fmt, labels, ext in [("yolo", "labels", ".txt"), ("yolo-seg", "labels", ".txt"), ("masks", "annotations", ".png")]:
        found = check_images(out / fmt / "images" / "train")
        label_files = sorted((out / fmt / labels / "train").iterdir())
        assert sorted(p.stem for p in label_files) == sorted(Path(p.name).stem for p in found.values())
        assert all(p.suffix == ext for p in label_files)
    for rel, path in check_images(out / "voc" / "JPEGImages").items():
        xml = (out / "voc" / "Annotations" / f"{Path(path.name).stem}.xml").read_text()
        assert f"<height>{heights[rel]}</height>" in xml and f"<filename>{path.name}</filename>" in xml
    assert len((out / "voc" / "ImageSets" / "Main" / "train.txt").read_text().split()) == 5

    # and supervision's readers see five images with their labels
    yolo = sv.DetectionDataset.from_yolo(str(out / "yolo" / "images" / "train"), str(out / "yolo" / "labels" / "train"),
                                         str(out / "yolo" / "data.yaml"))
    voc = sv.DetectionDataset.from_pascal_voc(str(out / "voc" / "JPEGImages"), str(out / "voc" / "Annotations"))
    assert len(yolo) == 5 and len(voc) == 5


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): (os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("fail_at", [1, 7, 20])
def test_disk_full_while_exporting_is_clear_and_loses_nothing(five_images, tmp_path, monkeypatch, fail_at):
    out = tmp_path / "out"
    label(five_images, CLASSES, out, predictor=FakePredictor(), formats=list(FORMATS), progress=False, preview=0)
    before = _tree(out)

    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] >= fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(DiskFullError) as info:
        export_run(out, list(FORMATS))
    message = str(info.value)
    assert message.startswith("disk full while writing the ") and str(out) in message
    assert "records" in message and "intact" in message and f"grounded export {out}" in message
    assert info.value.errno == errno.ENOSPC
    assert _tree(out) == before  # records, exports and errors.json as they were; no staging or temporary file

    monkeypatch.setattr(files.os, "fsync", real_fsync)  # space freed: the export completes, identical
    export_run(out, list(FORMATS))
    assert _tree(out) == before
