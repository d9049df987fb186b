"""Adapter training on tiny models: the loss falls, text-prompted masks move toward the teacher's, resume is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grounded.clip.adapter import TextPromptAdapter
from grounded.clip.config import AdapterTrainConfig
from grounded.clip.train import batch_at, focal_dice_loss, lr_at, train_adapter
from grounded.errors import InputError
from grounded.formats.checkpoint import load_state
from grounded.ontology import Ontology

ONTOLOGY = Ontology.from_prompt("car . wheel .")


def test_training_lowers_the_loss_and_moves_text_masks_toward_the_teacher(trained_adapter):
    result, out = trained_adapter
    losses = np.array([h["loss"] for h in result.history])
    assert result.finished and result.steps == 100 and result.images_used == 6
    assert losses[-10:].mean() < 0.6 * losses[:10].mean()
    # mean IoU of text-only masks with the teacher's (measured on the training images): 0.67 -> 0.86 here
    assert result.after["iou_text"] > result.before["iou_text"] + 0.1
    assert result.after["iou_box_text"] > result.before["iou_box_text"] - 0.02  # box + text stays close
    record = json.loads((out / "adapter.json").read_text())
    assert record["training"]["iou_after"] == result.after and record["training"]["steps"] == 100
    assert record["sam"]["name"].endswith("segmenter") and record["clip"]["backend"] == "transformers"
    assert len(json.loads((out / "history.json").read_text())) == 100


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, clip_predictor, tiny_clip, generated_images):
    config = AdapterTrainConfig(steps=8, batch_size=2, warmup=2, checkpoint_every=3)
    straight = train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "a", config)
    first = train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "b", config, stop_after=5)
    assert not first.finished and first.steps == 5 and not (tmp_path / "b" / "adapter.json").exists()
    state = load_state(tmp_path / "b")  # the project's training state: tensors and plain data, weights_only=True
    assert state["step"] == 5 and len(state["history"]) == 5 and state["optimizer"]["state"]
    assert json.loads((tmp_path / "b" / "last.json").read_text())["step"] == 5
    resumed = train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "b", config)
    assert resumed.finished and resumed.steps == 8
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a, b = TextPromptAdapter.load(tmp_path / "a"), TextPromptAdapter.load(tmp_path / "b")
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    with pytest.raises(InputError, match="other settings .*train.*--force"):
        train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "b",
                      AdapterTrainConfig(steps=9, batch_size=2, warmup=2, checkpoint_every=3))


class _Payload:
    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True


def test_a_state_with_other_objects_is_refused_unrun(tmp_path, clip_predictor, tiny_clip, generated_images):
    tmp_path.joinpath("out").mkdir()
    torch.save({"run": {}, "step": 1, "payload": _Payload()}, tmp_path / "out" / "train_state.pt")
    with pytest.raises(InputError, match="train_state.pt holds objects other than tensors"):
        train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "out",
                      AdapterTrainConfig(steps=2, batch_size=2, warmup=1))
    assert not _Payload.ran


def test_nothing_to_learn_from_is_an_error(tmp_path, clip_predictor, tiny_clip, generated_images):
    with pytest.raises(InputError, match="no images found"):
        train_adapter(tmp_path, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "out")
    strict = clip_predictor.options
    clip_predictor.options = strict.updated(box_threshold=1.0)
    try:
        with pytest.raises(InputError, match="found nothing"):
            train_adapter(generated_images, ONTOLOGY, clip_predictor, tiny_clip, tmp_path / "out")
    finally:
        clip_predictor.options = strict


def test_loss_ignores_unsure_and_padding_pixels():
    config = AdapterTrainConfig()
    teacher = torch.full((1, 4, 4), 5.0)
    teacher[0, :, 2:] = 0.0  # unsure (probability 0.5): weight 0
    valid = torch.ones(4, 4, dtype=torch.bool)
    good = torch.full((1, 4, 4), 5.0)
    wrong_where_unsure = good.clone()
    wrong_where_unsure[0, :, 2:] = -5.0
    assert focal_dice_loss(wrong_where_unsure, teacher, valid, config) == pytest.approx(
        float(focal_dice_loss(good, teacher, valid, config)), abs=1e-6)
    valid[:, :2] = False  # the confident half is padding now: nothing counts
    wrong = -good
    assert float(focal_dice_loss(wrong, teacher, valid, config)) < 1e-2
    assert float(focal_dice_loss(wrong, teacher, torch.ones(4, 4, dtype=torch.bool), config)) > 1.0


def test_schedule_and_batches():
    config = AdapterTrainConfig(steps=100, warmup=10, lr=1e-3, batch_size=4)
    assert lr_at(0, config) == pytest.approx(1e-4) and lr_at(9, config) == pytest.approx(1e-3)
    assert lr_at(99, config) < lr_at(50, config) < lr_at(10, config)
    epoch = [i for step in range(2) for i in batch_at(step, 10, config)]
    assert len(set(epoch)) == 8 and batch_at(0, 10, config) == batch_at(0, 10, config)
    assert batch_at(2, 10, config) != batch_at(0, 10, config)  # a new permutation each epoch
