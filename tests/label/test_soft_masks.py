"""grounded.label(..., soft_masks=True): the teacher's mask probabilities stored per image (grounded/label/soft.py).

The tiny SAM's random weights give mask logits of about 1e-6, whose probabilities all round to 0.5; the
``confident`` predictor scales its mask decoder's last layer by 1e6 (the same masks, logits of a few units),
so its soft masks mean something and can be checked against the hard ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from grounded import Predictor
from grounded.errors import InputError
from grounded.label import label
from grounded.label.soft import SOFT_DIR, SOFT_SIDE, manifest_entry, read_soft, soft_bytes, soft_path
from grounded.pipeline.predictor import soft_mask_size
from grounded.testing.fake import FakeConceptSegmenter, FakePredictor
from grounded.utils.masks import rle_to_mask

CLASSES = "car, wheel"
QUIET = {"progress": False, "preview": 0, "formats": ["coco"]}


@pytest.fixture(scope="module")
def confident(tiny_model_dirs):
    detector, segmenter = tiny_model_dirs
    predictor = Predictor(str(detector), str(segmenter), box_threshold=0.2, text_threshold=0.0)
    with torch.no_grad():
        for mlp in predictor.segmenter.model.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(1e6)
            mlp.proj_out.bias.mul_(1e6)
    return predictor


def _records(out):
    for path in sorted((out / "records").rglob("*.json")):
        yield path.relative_to(out / "records").as_posix()[: -len(".json")], json.loads(path.read_text())


def test_soft_files_match_the_records_and_their_hard_masks(confident, mixed_images, tmp_path):
    """Per detection, in the record's order: the same class and box; the probability map >= 128 against the hard
    mask resized (nearest) to the map's size has IoU >= 0.99 where the map is at the image's own size (only
    pixels with logits within ~0.008 of the threshold may differ) and >= 0.9 where it is smaller (large images,
    reduced: masks covering at least 1% of the map; slivers do not survive a reduction)."""
    out = tmp_path / "out"
    label(mixed_images, CLASSES, out, predictor=confident, soft_masks=True, **QUIET)
    assert json.loads((out / "run.json").read_text())["soft_masks"] == manifest_entry()
    checked = {"same size": 0, "reduced": 0}
    for rel, record in _records(out):
        soft = read_soft(soft_path(out, rel))
        hw = (record["height"], record["width"])
        assert soft.image_hw == hw and max(soft.probs.shape[1:]) <= SOFT_SIDE
        assert soft.class_id.tolist() == [d["class_id"] for d in record["detections"]]
        np.testing.assert_allclose(soft.xyxy, [d["bbox_xyxy"] for d in record["detections"]], atol=1e-3)
        for probs, item in zip(soft.probs, record["detections"], strict=True):
            h, w = probs.shape
            hard = np.asarray(Image.fromarray(rle_to_mask(item["mask"])).resize((w, h), Image.NEAREST))
            kind = "same size" if (h, w) == hw else "reduced"
            if hard.mean() < (0.0 if kind == "same size" else 0.01) or not hard.any():
                continue
            soft_mask = probs >= 128
            iou = (hard & soft_mask).sum() / (hard | soft_mask).sum()
            assert iou >= (0.99 if kind == "same size" else 0.9), (rel, kind, iou)
            checked[kind] += 1
    assert checked["same size"] >= 5 and checked["reduced"] >= 5, checked


def test_soft_masks_off_computes_and_writes_nothing(confident, mixed_images, tmp_path, tree_bytes, monkeypatch):
    """Off (the default): no probabilities computed, no soft folder, no run.json entry; on: the same records and
    exports, plus the soft files and the entry."""
    on, off = tmp_path / "on", tmp_path / "off"
    label(mixed_images, CLASSES, on, predictor=confident, soft_masks=True, **QUIET)
    with monkeypatch.context() as patch:
        patch.setattr(type(confident.segmenter), "probabilities", lambda *a: pytest.fail("computed while off"))
        label(mixed_images, CLASSES, off, predictor=confident, **QUIET)
    assert not (off / SOFT_DIR).exists()
    on_files, off_files = tree_bytes(on), tree_bytes(off)
    manifest = json.loads(on_files.pop("run.json"))
    del manifest["soft_masks"]
    assert json.dumps(manifest, sort_keys=True, indent=2) + "\n" == off_files.pop("run.json").decode()
    assert {k: v for k, v in on_files.items() if not k.startswith(SOFT_DIR + "/")} == off_files
    assert sorted(k for k in on_files if k.startswith(SOFT_DIR + "/")) == sorted(
        f"{SOFT_DIR}/{rel}.npz" for rel, _ in _records(on))


def _interrupted(out, images, predictor):
    """A run killed after its first images: the last records and soft files gone, a temporary left behind."""
    label(images, CLASSES, out, predictor=predictor, soft_masks=True, **QUIET)
    for rel, _ in list(_records(out))[3:]:
        (out / "records" / f"{rel}.json").unlink()
        soft_path(out, rel).unlink()
    (out / SOFT_DIR / ".x.npz.123.tmp").write_bytes(b"half")


def _without_then_with(out, images, predictor):
    """Labelled without soft masks first (the run resumed with them labels every image again)."""
    label(images, CLASSES, out, predictor=predictor, **QUIET)


def _record_without_soft(out, images, predictor):
    """One soft file removed: its image is labelled again, its record rewritten with the same bytes."""
    label(images, CLASSES, out, predictor=predictor, soft_masks=True, **QUIET)
    soft_path(out, next(_records(out))[0]).unlink()


@pytest.mark.parametrize("before", [_interrupted, _without_then_with, _record_without_soft],
                         ids=lambda f: f.__name__.strip("_"))
def test_resumed_run_writes_the_uninterrupted_bytes(before, confident, mixed_images, tmp_path, tree_bytes):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    label(mixed_images, CLASSES, whole, predictor=confident, soft_masks=True, **QUIET)
    before(resumed, mixed_images, confident)
    label(mixed_images, CLASSES, resumed, predictor=confident, soft_masks=True, **QUIET)
    assert tree_bytes(resumed) == tree_bytes(whole)


def test_soft_file_bytes_are_deterministic():
    probs = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = soft_bytes(probs, np.ones((2, 4)), [1, 0], (6, 8))
    assert data == soft_bytes(probs.copy(), np.ones((2, 4)), [1, 0], (6, 8))


def test_soft_mask_size():
    assert [soft_mask_size(hw, 256) for hw in [(48, 64), (400, 560), (1024, 256), (3, 2000)]] == [
        (48, 64), (183, 256), (256, 64), (1, 256)]


class Other:
    """A caller's own predictor: no soft masks to give."""

    def describe(self):
        return {}

    def segment_batch(self, images, prompt):
        return []


@pytest.mark.parametrize("predictor, why", [
    (lambda: FakePredictor(), "SAM-family"),  # a segmenter without probabilities
    (lambda: FakePredictor(model=FakeConceptSegmenter()), "SAM-family"),  # a concept segmenter
    (Other, "grounded.Predictor"),
], ids=["fake segmenter", "concept segmenter", "other"])
def test_soft_masks_refused_before_run_json(predictor, why, image_folder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=why):
        label(image_folder, CLASSES, out, predictor=predictor(), soft_masks=True, **QUIET)
    assert not (out / "run.json").exists()


def test_a_corrupt_soft_file_is_named(tmp_path):
    path = tmp_path / "a.jpg.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="a.jpg.npz"):
        read_soft(path)
