"""An honest estimate: a held-out test split nothing chooses with, scored beside val with a bootstrap interval;
test-time flip with left/right classes swapped; EMA weights."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from grounded.distill.augment import flip_map
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import open_dataset
from grounded.distill.ema import Ema
from grounded.distill.evaluate import format_table
from grounded.distill.metrics import bootstrap_miou, mean_iou, semantic_scores
from grounded.distill.predictor import StudentPredictor
from grounded.distill.splits import seeded_splits

TINY = {"image_size": 64, "epochs": 2, "batch_size": 4, "lr": 1e-2, "warmup_steps": 2, "seed": 0}


@pytest.mark.parametrize("n, val_fraction, test_fraction, seed, sizes", [
    (100, 0.2, 0.15, 0, (68, 17, 15)),
    (16, 0.2, 0.15, 3, (11, 3, 2)),
    (400, 0.2, 0.15, 0, (272, 68, 60)),
    (10, None, 0.2, 1, (8, 0, 2)),  # the dataset has its own validation split: only the test split is drawn
    (10, 0.2, 0.0, 0, (8, 2, 0)),  # test_fraction 0: none
])
def test_seeded_test_split_is_disjoint_complete_and_stable(n, val_fraction, test_fraction, seed, sizes):
    train, val, test = seeded_splits(n, val_fraction, seed, test_fraction)
    assert (len(train), len(val), len(test)) == sizes
    assert sorted(train + val + test) == list(range(n))  # disjoint and complete
    assert seeded_splits(n, val_fraction, seed, test_fraction) == (train, val, test)  # stable under the seed
    if test_fraction and val_fraction:  # the test split depends on neither the val fraction ...
        assert seeded_splits(n, 0.4, seed, test_fraction)[2] == test
        assert seeded_splits(n, val_fraction, seed + 1, test_fraction)[2] != test  # ... but on the seed


def test_too_few_images_keep_no_test_split_and_say_so(caplog):
    with caplog.at_level(logging.WARNING):
        assert seeded_splits(2, 0.5, 0, 0.3) == ([0], [1], []) or seeded_splits(2, 0.5, 0, 0.3)[2] == []
    assert "too few" in caplog.text


def test_open_dataset_holds_out_a_seeded_test_split(coco_dataset):
    splits = open_dataset(coco_dataset, 0.2, seed=0, test_fraction=0.15)
    files = splits.files()
    assert [len(files[k]) for k in ("train", "val", "test")] == [11, 3, 2]
    assert not set(files["test"]) & (set(files["train"]) | set(files["val"]))
    assert splits.info["test_split"] == "seeded 0, 0.15 of the images"
    assert open_dataset(coco_dataset, 0.3, seed=0, test_fraction=0.15).files()["test"] == files["test"]
    assert open_dataset(coco_dataset, 0.2, seed=0).test is not None and not open_dataset(coco_dataset).views().get("test")


def test_a_given_test_split_is_used_as_is(coco_dataset, tmp_path):
    for split in ("train", "valid", "test"):  # Roboflow's layout
        shutil.copytree(coco_dataset, tmp_path / split)
    splits = open_dataset(tmp_path, 0.2, seed=0, test_fraction=0.15)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 16, 16)
    assert splits.info["test_split"] == "given" and splits.test.image_path(0).parent.parent.name == "test"


@pytest.fixture(scope="module")
def run(coco_dataset, tmp_path_factory):
    """A tiny run whose test split is spied on: (run folder, TrainResult, events in order)."""
    import grounded.distill.train as train_module

    out = tmp_path_factory.mktemp("heldout") / "run"
    splits = open_dataset(coco_dataset, 0.2, seed=0, test_fraction=0.15)
    test_indices, events = set(splits.test.indices), []
    source, save = splits.train.source, train_module.save_student

    def spy(method):  # noqa: ANN001, ANN202
        def read(index):  # noqa: ANN001, ANN202
            if index in test_indices:
                events.append(("test read", index))
            return method(index)
        return read

    for name in ("semantic", "detections"):  # labels (split.json records the paths at the start)
        setattr(source, name, spy(getattr(source, name)))

    def spied_save(student, folder, *args, name="student", **kwargs):  # noqa: ANN001, ANN202
        events.append(("save", name))
        return save(student, folder, *args, name=name, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "save_student", spied_save)
    try:
        result = train_module.train(splits, out, StudentConfig(size="tiny"), TrainConfig(**TINY), progress=False)
    finally:
        mp.undo()
    return out, result, events


def test_nothing_chooses_with_the_test_split(run):
    out, result, events = run
    saves = [i for i, event in enumerate(events) if event == ("save", "student")]
    reads = [i for i, event in enumerate(events) if event[0] == "test read"]
    assert saves and reads and min(reads) > max(saves)  # read only after the checkpoint was chosen
    recorded = json.loads((out / "split.json").read_text())
    assert [len(recorded[k]) for k in ("train", "val", "test")] == [11, 3, 2]
    assert result.test["images"] == 2 and 0.0 <= result.test["miou"] <= 1.0
    assert result.test["step"] == json.loads((out / "student.json").read_text())["best"]["step"]


def test_evaluate_reports_val_and_test_side_by_side(run):
    from grounded.distill.workflow import evaluate_run

    out, _, _ = run
    metrics, where = evaluate_run(out, progress=False)
    saved = json.loads((where / "metrics.json").read_text())
    assert saved["images"] == 3 and saved["test"]["images"] == 2 and saved["split"] == "val"
    for result in (saved, saved["test"]):
        assert set(result["per_class_iou"]) == {"disc", "square"}
        low, high = result["miou_ci"]
        assert low <= result["miou"] + 1e-9 and result["miou"] <= high + 1e-9
    assert saved["gap"]["miou"] == pytest.approx(saved["miou"] - saved["test"]["miou"])
    assert set(saved["gap"]["per_class_iou"]) == {"disc", "square"}
    text = (where / "metrics.txt").read_text()
    assert "test IoU" in text and "gap (val - test)" in text and "95% CI" in text and text == format_table(metrics) + "\n"
    only_test, _ = evaluate_run(out, split="test", out=where / "test", progress=False)
    assert only_test["images"] == 2 and "gap" not in only_test


def test_evaluate_refuses_a_test_split_other_than_the_recorded_one(run, tmp_path):
    from grounded.distill.workflow import evaluate_run
    from grounded.errors import InputError

    out, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    recorded = json.loads((copy / "split.json").read_text())
    recorded["test"] = recorded["val"]
    (copy / "split.json").write_text(json.dumps(recorded))
    with pytest.raises(InputError, match="other test images"):
        evaluate_run(copy, progress=False)


def test_old_run_records_kept_no_test_split():
    assert TrainConfig.from_dict({"seed": 1}).test_fraction == 0.0 and TrainConfig().test_fraction == 0.15


def per_image(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random (3, 3) confusion matrices of ~70% accurate images."""
    confusions = rng.integers(0, 30, size=(n, 3, 3))
    confusions[:, [0, 1, 2], [0, 1, 2]] += 200
    return confusions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_holds_the_estimate_and_shrinks_with_more_images(seed):
    rng = np.random.default_rng(seed)
    widths = []
    for n in (10, 1000):
        confusions = per_image(rng, n)
        point = semantic_scores(confusions.sum(0), ["a", "b"])["miou"]
        low, high = bootstrap_miou(confusions, rounds=500, seed=seed)
        assert low <= point <= high and mean_iou(confusions.sum(0)) == pytest.approx(point)
        assert bootstrap_miou(confusions, rounds=500, seed=seed) == (low, high)  # seeded
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # ~ 1 / sqrt(n): 10x narrower for 100x the images


@pytest.mark.parametrize("names, mirror", [
    (["front_left_door", "front_right_door", "wheel"], [0, 2, 1, 3]),
    (["left_mirror", "hood", "right_mirror", "left_light"], [0, 3, 2, 1, 4]),  # no right_light: kept
    (["disc", "square"], [0, 1, 2]),
])
def test_flip_swaps_left_and_right_classes(names, mirror):
    assert flip_map(names)[: len(names) + 1].tolist() == mirror


def aware(batch: np.ndarray) -> np.ndarray:
    """A student that calls bright pixels left_door in the left half of its input, right_door in the right half."""
    half, logits = batch.shape[-1] // 2, np.zeros((1, 3, *batch.shape[2:]), np.float32)
    logits[:, 1, :, :half], logits[:, 2, :, half:] = 5.0 * batch[:, 0, :, :half], 5.0 * batch[:, 0, :, half:]
    return logits


def blind(batch: np.ndarray) -> np.ndarray:
    """A student that calls every bright pixel left_door, wherever it is."""
    logits = np.zeros((1, 3, *batch.shape[2:]), np.float32)
    logits[:, 1] = 5.0 * batch[:, 0]
    return logits


@pytest.mark.parametrize("student, agree", [(aware, True), (blind, False)])
def test_tta_flip_averages_with_the_mirrored_image_classes_swapped(student, agree):
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, :8] = 255  # a bright left half
    plain = StudentPredictor(student, ["left_door", "right_door"], 16, 1).probs(image)
    flipped = StudentPredictor(student, ["left_door", "right_door"], 16, 1, tta_flip=True).probs(image)
    assert plain[1, :, :8].min() > 0.9  # both call the bright left half left_door ...
    if agree:  # ... the mirrored image, seen bright on the right, says right_door: swapped back, it agrees
        assert np.allclose(flipped, plain, atol=1e-6)
    else:  # ... the blind one says left_door on the mirrored image too: swapped back, right_door; they split
        assert np.allclose(flipped[1, :, :8], flipped[2, :, :8]) and flipped[1, :, :8].min() > 0.45


def test_ema_follows_the_weights_with_its_decay():
    model = torch.nn.Linear(2, 1)
    ema = Ema(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1000)  # decay min(0.9, 1001 / 1010) = 0.9
    assert torch.allclose(ema.module.weight, start + 0.1) and not ema.module.weight.requires_grad
    ema.update(model, step=1)  # early steps move faster: decay 2 / 11
    assert torch.allclose(ema.module.weight, start + 0.1 + 0.9 * (9 / 11))


def test_ema_run_keeps_the_averaged_student_and_resumes_it(coco_dataset, tmp_path):
    from grounded.distill.checkpoint import load_student
    from grounded.distill.train import train

    cfg = {**TINY, "epochs": 1, "ema": True, "ema_decay": 0.5, "checkpoint_every": 1}  # one validation, at the end
    train(coco_dataset, tmp_path / "whole", StudentConfig(size="tiny"), TrainConfig(**cfg), progress=False)
    state = torch.load(tmp_path / "whole" / "train_state.pt", weights_only=True)
    kept, last = (load_student(tmp_path / "whole" / name)[0].state_dict() for name in ("student.safetensors",
                                                                                       "last.safetensors"))
    assert all(torch.equal(kept[k], state["ema"][k]) for k in kept)  # the average is what was kept ...
    assert not all(torch.equal(kept[k], last[k]) for k in kept)  # ... not the last weights
    train(coco_dataset, tmp_path / "cut", StudentConfig(size="tiny"), TrainConfig(**cfg, max_steps=1), progress=False)
    train(coco_dataset, tmp_path / "cut", StudentConfig(size="tiny"), TrainConfig(**cfg), progress=False)
    resumed = torch.load(tmp_path / "cut" / "train_state.pt", weights_only=True)["ema"]
    assert all(torch.equal(resumed[k], state["ema"][k]) for k in kept)  # the average continued where it stopped
