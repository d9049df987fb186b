"""Students learning from the teacher's soft masks: targets, their alignment under augmentation, the KL term,
and ``grounded label --soft-masks`` -> ``grounded train --soft-weight`` end to end (grounded/distill/soft.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grounded.cli import main
from grounded.distill.augment import augment, augment_with_soft, flip_map, letterbox
from grounded.distill.config import IGNORE_INDEX, AugmentConfig, TrainConfig
from grounded.distill.losses import SegmentationLoss, soft_distillation
from grounded.distill.soft import letterbox_soft, soft_targets
from grounded.distill.train import train
from grounded.errors import InputError
from grounded.label.soft import SoftMasks
from grounded.testing.fake import make_images

STILL = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "balanced_crops": False}


def _scene():
    """8 x 8: a 4 x 4 "left_door" block at rows 2-5, columns 0-3 (even-aligned, so a 2x zoom either way maps
    it to whole pixels), background elsewhere. Returns (image, labels (2, 8, 8), class maxima (2, 8, 8))."""
    image = torch.zeros(3, 8, 8)
    image[0, 2:6, 0:4] = 1.0
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[0, 2:6, 0:4] = 1  # class 0 ("left_door") is value 1
    maxima = torch.zeros(2, 8, 8)
    maxima[0, 2:6, 0:4] = 1.0
    return image, labels, maxima


@pytest.mark.parametrize("cfg, where", [
    ({"hflip": 1.0, "scale": (1.0, 1.0)}, "columns 4-7, now right_door"),
    ({"hflip": 0.0, "scale": (2.0, 2.0)}, "a 2x zoom, then an 8 x 8 crop"),
    ({"hflip": 0.0, "scale": (0.5, 0.5)}, "a 0.5x zoom, padded back to 8 x 8"),
    ({"hflip": 1.0, "scale": (2.0, 2.0)}, "flipped, zoomed, cropped"),
], ids=["flip", "crop", "pad", "flip+crop"])
def test_soft_maps_move_with_the_image_and_the_labels(cfg, where):
    """Wherever the block lands, the soft maps land there too: the channel of the class the class map holds is
    >= 0.5 exactly there (a 2x bilinear zoom leaves 0.75 / 0.25 at the edges, where nearest for the labels
    splits the same way), every channel is 0 on pixels the padding uncovered (the class map's IGNORE_INDEX),
    and the image's red channel shows the same block."""
    image, labels, maxima = _scene()
    lut = flip_map(["left_door", "right_door"])
    g = torch.Generator().manual_seed(3)
    pixels, maps, soft = augment_with_soft(image, labels, AugmentConfig(**cfg, **STILL), g, lut, None, maxima)
    target = maps[0]
    ignored = target == IGNORE_INDEX
    assert soft[:, ignored].eq(0).all()
    for value, channel in ((1, 0), (2, 1)):
        assert torch.equal((soft[channel] >= 0.5)[~ignored], (target == value)[~ignored]), where
    assert torch.equal((pixels[0] > 0.5)[~ignored], (target > 0)[~ignored]), where
    if cfg["hflip"] and cfg["scale"] == (1.0, 1.0):  # checked by hand: the block is at columns 4-7 as right_door
        assert target[2:6, 4:8].eq(2).all() and soft[1, 2:6, 4:8].eq(1).all() and soft[0].eq(0).all()


def test_soft_maps_change_no_draw():
    """With the teacher's maps or without, the image and the labels come out the same (every option on)."""
    image, labels, maxima = _scene()
    cfg = AugmentConfig(rotate=10, blur=0.5, jpeg=0.5)
    lut = flip_map(["left_door", "right_door"])
    for seed in range(5):
        plain = augment(image, labels, cfg, torch.Generator().manual_seed(seed), lut)
        with_soft = augment_with_soft(image, labels, cfg, torch.Generator().manual_seed(seed), lut, None, maxima)
        assert torch.equal(plain[0], with_soft[0]) and torch.equal(plain[1], with_soft[1])


def test_soft_targets_by_hand():
    maxima = torch.tensor([[[0.8]], [[0.3]]])  # one pixel: class 0 at 0.8, class 1 at 0.3
    target = soft_targets(maxima)
    assert torch.allclose(target[:, 0, 0], torch.tensor([0.2, 0.8, 0.3]) / 1.3)
    assert soft_targets(maxima, present=False).eq(0).all()


def test_letterboxed_soft_masks_align_with_the_letterboxed_labels():
    """A 30 x 60 image whose class-1 object is its left half: letterboxed to 32 the soft map (>= 128) and the
    class map agree on at least 90% of the object's pixels (bilinear against nearest at the edge), and the
    padding holds no probability; a file for another image size is left out."""
    probs = np.zeros((1, 15, 30), dtype=np.uint8)  # stored at half the image's size, as a reduced image's would be
    probs[0, :, :15] = 255
    teacher = SoftMasks(probs, np.array([[0, 0, 30, 30]], np.float32), np.array([1]), (30, 60))
    semantic = np.zeros((30, 60), dtype=np.uint8)
    semantic[:, :30] = 2
    _, target = letterbox(np.zeros((30, 60, 3), np.uint8), semantic, 32)
    boxed = letterbox_soft(teacher, (30, 60), 32, num_classes=2)
    assert boxed.shape == (2, 32, 32) and not boxed[0].any() and not boxed[:, 16:].any()
    soft, hard = boxed[1] >= 128, target == 2
    assert (soft & hard).sum() / (soft | hard).sum() >= 0.9
    assert letterbox_soft(teacher, (31, 60), 32, num_classes=2) is None


@pytest.mark.parametrize("student, expected", [
    ("teacher", "zero"),  # the student's distribution is the teacher's: KL = 0
    ("uniform", "positive"),
    ("ignored", "zero"),  # a different student, but every pixel ignored or without a teacher
])
def test_kl_term(student, expected):
    torch.manual_seed(0)
    teacher = torch.rand(2, 3, 4, 4).softmax(1)
    logits = {"teacher": teacher.log(), "uniform": torch.zeros(2, 3, 4, 4), "ignored": torch.randn(2, 3, 4, 4)}[student]
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    if student == "ignored":
        target[0] = IGNORE_INDEX
        teacher = teacher.clone()
        teacher[1] = 0.0  # image 1 has no soft masks
    value = float(soft_distillation(logits, teacher, target))
    assert (abs(value) < 1e-6) if expected == "zero" else value > 0.01


def test_segmentation_loss_adds_the_weighted_term():
    logits, target = torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    teacher = torch.tensor([0.2, 0.5, 0.3])[None, :, None, None].expand(1, 3, 4, 4)
    plain, parts = SegmentationLoss(dice_weight=0.0, soft_weight=0.5)(logits, target, 3)
    assert "soft" not in parts
    total, parts = SegmentationLoss(dice_weight=0.0, soft_weight=0.5)(logits, target, 3, teacher)
    assert float(total) == pytest.approx(float(plain) + 0.5 * parts["soft"]) and parts["soft"] > 0


def test_soft_weight_needs_a_run_with_soft_masks(coco_dataset, tmp_path):
    with pytest.raises(InputError, match="--soft-masks"):
        train(coco_dataset, tmp_path / "run", config=TrainConfig(soft_weight=0.5, max_steps=1, image_size=64),
              progress=False)


def test_label_with_soft_masks_then_train_with_soft_weight(tiny_model_dirs, tmp_path):
    """The command lines end to end: the tiny teacher labels 6 images with --soft-masks, a student trains 2 steps
    with --soft-weight and the term takes part (its logged value is > 0)."""
    detector, segmenter = tiny_model_dirs
    make_images(tmp_path / "images", 6)
    run, student = tmp_path / "labels", tmp_path / "student"
    assert main(["label", str(tmp_path / "images"), "--classes", "car, wheel", "--out", str(run), "--detector",
                 str(detector), "--segmenter", str(segmenter), "--box-threshold", "0.2", "--text-threshold", "0",
                 "--soft-masks", "--format", "coco", "--preview", "0", "--no-progress"]) == 0
    assert json.loads((run / "run.json").read_text())["soft_masks"]["folder"] == "soft"
    assert len(list((run / "soft").rglob("*.npz"))) == 6
    assert main(["train", str(run), "--out", str(student), "--soft-weight", "0.5", "--size", "tiny", "--max-steps",
                 "2", "--image-size", "64", "--batch-size", "2", "--test-fraction", "0", "--no-export"]) == 0
    history = json.loads((student / "history.json").read_text())
    assert history[-1]["soft"] > 0 and (student / "student.safetensors").is_file()
    assert json.loads((student / "student.json").read_text())["train"]["soft_weight"] == 0.5
