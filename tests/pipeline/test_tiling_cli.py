"""``--tile auto|SIZE`` through the command line: the flags are TileOptions' fields, and tiny real backends
(Grounding DINO + SAM, OWLv2 + SAM, SAM 3) segment and label through slices with masks at full size."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import numpy as np
import pytest
from PIL import Image

from grounded.cli import main
from grounded.cli.common import add_tile_arguments, tile_options
from grounded.config import TILE_HELP, TileOptions
from grounded.io.detections_json import detections_from_json
from grounded.utils.masks import rle_to_mask

SHARED_CLIP = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vocab" / "clip"


def test_every_tile_field_has_a_flag():
    assert set(TILE_HELP) == {f.name for f in fields(TileOptions)}
    parser = argparse.ArgumentParser()
    add_tile_arguments(parser)
    assert tile_options(parser.parse_args([])) == TileOptions()
    got = tile_options(parser.parse_args(["--tile", "640", "--tile-overlap", "0.3", "--no-tile-whole",
                                          "--tile-batch", "2"]))
    assert got == TileOptions(tile=640, tile_overlap=0.3, tile_whole=False, tile_batch=2)
    assert tile_options(parser.parse_args(["--tile", "auto"])).tile == "auto"


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A 300 x 420 photo-like image: larger than the tiny detector's 128-pixel input, so --tile auto slices it."""
    rng = np.random.default_rng(2)
    image = np.kron(rng.integers(0, 256, (30, 42, 3), dtype=np.uint8), np.ones((10, 10, 1), dtype=np.uint8))
    path = tmp_path_factory.mktemp("large") / "large.png"
    Image.fromarray(image).save(path)
    return path


def _check(out, stem, hw, at_most):
    obj = json.loads((out / f"{stem}.json").read_text())
    assert (obj["height"], obj["width"]) == hw
    assert 0 < len(obj["detections"]) <= at_most
    for item in obj["detections"]:
        mask = rle_to_mask(item["mask"])
        assert mask.shape == hw and item["area"] == int(mask.sum())
    return obj


def test_segment_tiled_with_tiny_grounding_dino_and_sam(tiny_model_dirs, large, tmp_path):
    det, seg = tiny_model_dirs
    out = tmp_path / "out"
    code = main(["segment", str(large), "a car", "--out", str(out), "--detector", str(det), "--segmenter", str(seg),
                 "--box-threshold", "0.2", "--text-threshold", "0", "--max-detections", "4", "--tile", "auto"])
    assert code == 0
    obj = _check(out, "large", (300, 420), 4)
    assert detections_from_json(obj).mask.shape == (len(obj["detections"]), 300, 420)
    with Image.open(out / "large.png") as png:
        assert png.size == (420, 300)


def test_segment_refuses_a_bad_tile(tiny_model_dirs, large, tmp_path, capsys):
    assert main(["segment", str(large), "a car", "--out", str(tmp_path), "--tile", "8"]) == 2
    assert "tile must be 'auto'" in capsys.readouterr().err


def test_segment_tiled_with_tiny_owlv2(tmp_path_factory, tiny_model_dirs, large, tmp_path):
    from grounded.testing.tiny_detectors import build_tiny_owlv2

    owl = build_tiny_owlv2(tmp_path_factory.mktemp("owlv2"), SHARED_CLIP if SHARED_CLIP.is_dir() else None)
    out = tmp_path / "out"
    assert main(["segment", str(large), "car", "--out", str(out), "--detector", str(owl), "--segmenter",
                 str(tiny_model_dirs[1]), "--box-threshold", "0.0", "--max-detections", "3", "--tile", "auto",
                 "--tile-overlap", "0"]) == 0
    _check(out, "large", (300, 420), 3)


def test_segment_tiled_with_tiny_sam3(tmp_path_factory, large, tmp_path):
    pytest.importorskip("torchvision", reason="SAM 3's processor needs torchvision (the backends extra)")
    if not SHARED_CLIP.is_dir():
        pytest.skip("CLIP vocabulary ../shared/data/vocab/clip not present (SAM 3 needs CLIP's real tokenizer)")
    from grounded.testing.tiny_segmenters import build_tiny_sam3

    sam3 = build_tiny_sam3(tmp_path_factory.mktemp("sam3"), SHARED_CLIP)
    out = tmp_path / "out"
    assert main(["segment", str(large), "a car", "--out", str(out), "--model", str(sam3), "--box-threshold", "0.0",
                 "--max-detections", "5", "--tile", "auto", "--tile-batch", "8"]) == 0
    _check(out, "large", (300, 420), 5)


def test_label_tiled_records_full_size_masks_and_the_settings(tiny_model_dirs, large, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "large.png").write_bytes(large.read_bytes())
    Image.fromarray(np.full((90, 100, 3), 120, np.uint8)).save(images / "small.png")  # not tiled: as untiled
    det, seg = tiny_model_dirs
    out = tmp_path / "out"
    argv = ["label", str(images), "--classes", "car", "--out", str(out), "--detector", str(det), "--segmenter",
            str(seg), "--box-threshold", "0.2", "--text-threshold", "0", "--max-detections", "3", "--no-progress",
            "--preview", "0", "--tile", "auto"]
    assert main(argv) == 0
    record = json.loads((out / "records" / "large.png.json").read_text())
    assert (record["height"], record["width"]) == (300, 420) and record["detections"]
    assert all(rle_to_mask(d["mask"]).shape == (300, 420) for d in record["detections"])
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["tiling"]["tile"] == "auto"
    assert main([*argv[:-1], "256"]) == 2  # other tiling settings: another run, refused without --force
