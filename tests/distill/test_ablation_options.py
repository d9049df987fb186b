"""Opt-in training options of the ablation (issue 25): small rotations, blur / JPEG noise, Lovász-softmax; and
the ablation benchmark's harness on a tiny generated dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from grounded.distill.augment import augment, degrade, flip_map, rotate
from grounded.distill.config import IGNORE_INDEX, AugmentConfig, StudentConfig, TrainConfig
from grounded.distill.losses import SegmentationLoss, lovasz_grad, lovasz_softmax
from grounded.distill.train import train
from grounded.errors import InputError

OFF = {"hflip": 0.0, "scale": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def scene(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A red rectangle of class 1 (image channel 0 = 1 exactly there) with an ignored band at the bottom, and a
    second map (boundaries) marking the rectangle's top row."""
    target = torch.zeros(size, size, dtype=torch.long)
    target[6:20, 8:18] = 1
    target[-4:] = IGNORE_INDEX
    boundary = torch.zeros_like(target)
    boundary[6, 8:18] = 1
    image = torch.stack([(target == 1).float(), torch.zeros(size, size), torch.full((size, size), 0.5)])
    return image, torch.stack([target, boundary])


@pytest.mark.parametrize("settings", [
    {"rotate": -1.0}, {"rotate": 200.0}, {"blur": 1.5}, {"jpeg": -0.1}, {"hflip": 2.0},
    {"blur_sigma": (2.0, 1.0)}, {"jpeg_quality": (0, 90)}, {"jpeg_quality": (50, 100)}, {"scale": (1.0,)},
])
def test_augment_settings_out_of_range_are_refused(settings):
    with pytest.raises(InputError, match=next(iter(settings))):
        AugmentConfig(**settings)


@pytest.mark.parametrize("settings", [{"lovasz_weight": -1.0}, {"dice_weight": -0.5}])
def test_negative_loss_weights_are_refused(settings):
    with pytest.raises(InputError, match=next(iter(settings))):
        TrainConfig(**settings)


def test_new_settings_round_trip_through_json():
    cfg = TrainConfig(lovasz_weight=0.5, augment=AugmentConfig(rotate=10, blur=0.3, jpeg=0.2, jpeg_quality=(40, 80)))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.augment.jpeg_quality == (40, 80) and again.augment.blur_sigma == (0.3, 1.5)
    assert AugmentConfig().rotate == AugmentConfig().blur == AugmentConfig().jpeg == TrainConfig().lovasz_weight == 0


@pytest.mark.parametrize("degrees, k", [(90, 1), (-90, -1), (180, 2), (0, 0)])
def test_right_angles_equal_rot90_exactly(degrees, k):
    image, maps = scene(8)
    img, out = rotate(image, maps, degrees)
    assert torch.equal(out, torch.rot90(maps, k, (-2, -1)))  # counter-clockwise, as torch.rot90
    assert torch.allclose(img, torch.rot90(image, k, (-2, -1)), atol=1e-5)


@pytest.mark.parametrize("degrees", [3.0, -7.5, 10.0, 25.0, 45.0])
def test_rotation_keeps_maps_aligned_with_the_image_and_the_ignore_index(degrees):
    image, maps = scene()
    img, out = rotate(image, maps, degrees)
    assert img.shape == image.shape and out.shape == maps.shape and out.dtype == torch.long
    assert set(out.unique().tolist()) <= {0, 1, IGNORE_INDEX}  # nearest: no new label values
    cls, valid = out[0], out[0] != IGNORE_INDEX
    assert ((img[0] > 0.5)[valid] == (cls[valid] == 1)).float().mean() > 0.97  # bilinear edges blur
    grey = img[2] > 0.1  # inside the picture (channel 2 is 0.5 everywhere, 0 in uncovered corners)
    assert (cls[~grey] == IGNORE_INDEX).all() and (~grey).any() >= (abs(degrees) >= 5)  # uncovered corners ignored
    assert ((out[1] == 1) <= (cls == 1) | (cls == IGNORE_INDEX)).all()  # boundaries move with their class
    if abs(degrees) <= 10:
        assert (cls[-2:, 12:20] == IGNORE_INDEX).all()  # the ignored band stays ignored


@pytest.mark.parametrize("sigma, quality", [(0.0, None), (1.0, None), (0.0, 50), (1.2, 30)])
def test_degrade_shapes_and_effects(sigma, quality):
    checker = ((torch.arange(32)[:, None] // 2 + torch.arange(32)[None] // 2) % 2).float()
    image = torch.stack([checker, 1 - checker, torch.full((32, 32), 0.5)])
    out = degrade(image, sigma, quality)
    assert out.shape == image.shape and out.dtype == torch.float32 and 0 <= float(out.min()) <= float(out.max()) <= 1
    change = float((out - image).abs().mean())
    if sigma == 0 and quality is None:
        assert out is image
    else:
        assert change > 0.02 and float(out[0].std()) < float(image[0].std())  # smoother, not identical
        assert abs(float(out[2].mean()) - 0.5) < 0.02  # a flat channel stays flat (up to rounding)


@pytest.mark.parametrize("settings", [{"rotate": 10.0}, {"blur": 1.0, "jpeg": 1.0}, {"rotate": 15.0, "blur": 1.0}])
def test_augment_with_new_options_is_aligned_and_seeded(settings):
    image, maps = scene()
    cfg = AugmentConfig(**{**OFF, "hflip": 0.5, "scale": (0.8, 1.3), **settings})
    for seed in range(4):
        img, out = augment(image, maps, cfg, torch.Generator().manual_seed(seed), flip_map(["x"]))
        again = augment(image, maps, cfg, torch.Generator().manual_seed(seed), flip_map(["x"]))
        assert torch.equal(img, again[0]) and torch.equal(out, again[1])
        assert img.shape == (3, 32, 32) and out.shape == (2, 32, 32)
        valid = out[0] != IGNORE_INDEX
        assert ((img[0] > 0.5)[valid] == (out[0][valid] == 1)).float().mean() > 0.9


def test_options_that_are_off_leave_the_default_augmentations_unchanged():
    image, maps = scene()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    default = augment(image, maps, AugmentConfig(), g(), flip_map(["x"]))
    off = augment(image, maps, AugmentConfig(blur_sigma=(2.0, 3.0), jpeg_quality=(5, 10)), g(), flip_map(["x"]))
    assert torch.equal(default[0], off[0]) and torch.equal(default[1], off[1])


def test_lovasz_grad_by_hand():
    # g = 2; J = 1 - (2 - tp) / (2 + fp) along [1, 0, 1]: 0.5, 2/3, 1 -> differences 0.5, 1/6, 1/3
    assert torch.allclose(lovasz_grad(torch.tensor([1.0, 0.0, 1.0])), torch.tensor([0.5, 1 / 6, 1 / 3]))


def _logits_for(p: list[float]) -> torch.Tensor:
    """Two-class logits (1, 2, 1, N) whose softmax gives class 1 the probabilities ``p``."""
    p_ = torch.tensor(p)
    return torch.stack([torch.zeros_like(p_), torch.log(p_ / (1 - p_))]).reshape(1, 2, 1, -1)


@pytest.mark.parametrize("p, target, expected", [
    # class 1: errors 0.1, 0.8, 0.5 -> sorted 0.8 (fg), 0.5 (bg), 0.1 (fg) x grad 0.5, 1/6, 1/3 = 0.51667;
    # class 0: errors 0.1, 0.8, 0.5 -> sorted 0.8 (bg), 0.5 (fg), 0.1 (bg) x grad 0.5, 0.5, 0 = 0.65
    ([0.9, 0.2, 0.5], [1, 1, 0], (0.65 + 0.4 + 0.5 / 6 + 0.1 / 3) / 2),
    ([0.6, 0.6], [1, 1], 0.4),  # one class present: its errors 0.4, 0.4 x grad 0.5, 0.5
    ([0.6, 0.3, 0.7], [1, IGNORE_INDEX, 1], 0.35),  # the ignored pixel takes no part: errors 0.4, 0.3
])
def test_lovasz_softmax_by_hand(p, target, expected):
    assert float(lovasz_softmax(_logits_for(p), torch.tensor([[target]]))) == pytest.approx(expected, abs=1e-5)


def test_lovasz_on_one_hot_probabilities_is_one_minus_iou_of_present_classes():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 0]]])
    predicted = torch.tensor([[[0, 1, 1, 1], [2, 2, 0, 0]]])
    logits = 50.0 * torch.nn.functional.one_hot(predicted, 4).permute(0, 3, 1, 2).float()  # class 3: never true
    # IoU: class 0 2/4, class 1 2/3, class 2 2/3 -> mean(1 - IoU) = (0.5 + 1/3 + 1/3) / 3
    assert float(lovasz_softmax(logits, target)) == pytest.approx((0.5 + 2 / 3) / 3, abs=1e-5)
    nothing = torch.full_like(target, IGNORE_INDEX)
    zero = lovasz_softmax(logits.requires_grad_(), nothing)
    zero.backward()
    assert float(zero.detach()) == 0 and logits.grad is not None


def test_segmentation_loss_adds_the_lovasz_term():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    plain, parts = SegmentationLoss()(logits, target)
    total, with_lovasz = SegmentationLoss(lovasz_weight=0.5)(logits, target)
    assert "lovasz" not in parts and with_lovasz["lovasz"] == pytest.approx(float(lovasz_softmax(logits, target)))
    assert float(total) == pytest.approx(float(plain) + 0.5 * with_lovasz["lovasz"], abs=1e-5)


def test_training_with_every_new_option(coco_dataset, tmp_path):
    cfg = TrainConfig(image_size=64, epochs=1, batch_size=4, lr=1e-2, warmup_steps=1, test_fraction=0.0,
                      lovasz_weight=1.0, augment=AugmentConfig(rotate=10, blur=0.5, jpeg=0.5))
    result = train(coco_dataset, tmp_path, StudentConfig(size="tiny"), cfg, progress=False)
    assert result.steps == 3 and "lovasz" in result.history[-1] and result.history[-1]["lovasz"] > 0
    record = json.loads((tmp_path / "student.json").read_text())
    assert record["train"]["lovasz_weight"] == 1.0 and record["train"]["augment"]["rotate"] == 10


def test_ablation_harness_trains_scores_and_writes_tables(coco_dataset, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import distill_ablation as ablation

    base = TrainConfig(image_size=64, max_steps=4, batch_size=4, lr=1e-2, warmup_steps=1, test_fraction=0.2)
    result = ablation.ablate(coco_dataset, tmp_path, StudentConfig(size="tiny"), base, ["lovasz", "tta_flip"],
                             keep=["lovasz", "tta_flip"], budget="4 steps")
    rows = {r["name"]: r for r in result["rows"]}
    assert list(rows) == ["baseline", "+lovasz", "+tta_flip", "+kept"]
    assert rows["+tta_flip"]["run"] == rows["baseline"]["run"]  # scoring only: the baseline's student
    assert rows["+kept"]["run"] == rows["+lovasz"]["run"] and rows["+kept"]["tta_flip"]  # same training: reused
    for row in rows.values():
        assert row["steps"] == 4 and row["test_images"] == 3 and len(row["parts_miou_ci"]) == 2
        assert set(row["per_class_iou"]) == set(row["val_per_class_iou"]) == {"disc", "square"}
    table = (tmp_path / "ablation.md").read_text()
    assert "| +lovasz |" in table and "| disc |" in table and json.loads((tmp_path / "ablation.json").read_text())
    assert ablation.kept_changes(result["rows"][:3], "val") == [r["name"][1:] for r in result["rows"][1:3]
                                                                 if r["val_parts_miou"] > rows["baseline"]["val_parts_miou"]]
    del sys.modules["distill_ablation"], sys.modules["distill_car_parts"]
