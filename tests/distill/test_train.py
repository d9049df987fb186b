"""Training: the loss falls, checkpoints reload to identical outputs, a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from grounded.distill.checkpoint import load_student
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.train import epoch_batches, train
from grounded.utils.schedule import warmup_cosine


def tiny(**overrides) -> TrainConfig:
    # no test split: 13 train + 3 val images, 3 steps per epoch (the test split has its own tests: test_heldout.py)
    base = {"image_size": 64, "epochs": 3, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "seed": 0, "test_fraction": 0.0}
    return TrainConfig(**{**base, **overrides})


def weights(path) -> dict[str, torch.Tensor]:
    return load_student(path)[0].state_dict()


def test_loss_falls_and_run_folder_is_complete(coco_dataset, tmp_path):
    result = train(coco_dataset, tmp_path, StudentConfig(size="tiny"), tiny(epochs=6, val_every=1), progress=False)
    losses = [row["train_loss"] for row in result.history]  # epoch means
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0]
    assert result.best_miou == max(row["miou"] for row in result.history) > 0
    for name in ("student.safetensors", "student.json", "last.safetensors", "train_state.pt", "history.json",
                 "training_curve.png"):
        assert (tmp_path / name).is_file(), name
    record = json.loads((tmp_path / "student.json").read_text())
    assert record["student"]["class_names"] == ["disc", "square"] and record["image_size"] == 64


def test_checkpoint_reloads_to_identical_outputs(coco_dataset, tmp_path):
    train(coco_dataset, tmp_path, StudentConfig(size="tiny"), tiny(epochs=1), progress=False)
    a, _ = load_student(tmp_path)
    b, _ = load_student(tmp_path / "student.safetensors")
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_same_seed_same_weights_other_seed_differs(coco_dataset, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(coco_dataset, tmp_path / name, StudentConfig(size="tiny"), tiny(epochs=1, seed=seed), progress=False)
    a, b, c = (weights(tmp_path / n / "last.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("interrupt_at", [2, 3])  # an epoch boundary (2 steps per epoch: 11 images) and mid-epoch
def test_resume_equals_uninterrupted(coco_dataset, tmp_path, interrupt_at):
    whole = train(coco_dataset, tmp_path / "whole", StudentConfig(size="tiny"), tiny(checkpoint_every=1), progress=False)
    cut = train(coco_dataset, tmp_path / "cut", StudentConfig(size="tiny"), tiny(checkpoint_every=1, max_steps=interrupt_at),
                progress=False)
    assert cut.stopped_early and cut.steps == interrupt_at
    resumed = train(coco_dataset, tmp_path / "cut", StudentConfig(size="tiny"), tiny(checkpoint_every=1), progress=False)
    assert resumed.steps == whole.steps == 9
    a, b = weights(tmp_path / "whole" / "last.safetensors"), weights(tmp_path / "cut" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "step, expected", [(0, 0.25), (3, 1.0), (4, 1.0), (54, 0.5 * (1 + 0.1)), (104, 0.1), (500, 0.1)]
)
def test_warmup_then_cosine(step, expected):
    assert warmup_cosine(step, warmup=4, total=104, min_ratio=0.1) == pytest.approx(expected)


def test_epoch_batches_are_seeded_full_and_cover_once():
    batches = epoch_batches(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4] and len(set(sum(batches, []))) == 8
    assert batches == epoch_batches(10, 4, seed=0, epoch=0) != epoch_batches(10, 4, seed=0, epoch=1)


def test_bfloat16_autocast_trains_on_cpu(coco_dataset, tmp_path):
    result = train(coco_dataset, tmp_path, StudentConfig(size="tiny"), tiny(epochs=1, amp="bf16"), progress=False)
    assert result.steps == 3 and all(torch.isfinite(v).all() for v in weights(tmp_path / "last.safetensors").values())
