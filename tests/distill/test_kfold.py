"""k-fold scoring for small datasets: seeded folds, the auto rule, pooled confusions, the flag, the run record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import open_dataset
from grounded.distill.evaluate import evaluate_folds, evaluate_student, format_table
from grounded.distill.metrics import semantic_scores
from grounded.distill.predictor import StudentPredictor
from grounded.distill.splits import DataSplits, View, fold_splits, folds_for, seeded_folds, seeded_splits
from grounded.distill.train import TrainResult
from grounded.errors import InputError
from tests.distill.conftest import CLASSES, write_coco

# two steps per student (max_steps alone is the schedule): what is checked is the bookkeeping, not the scores
QUICK = {"image_size": 64, "max_steps": 2, "batch_size": 4, "warmup_steps": 1, "lr": 1e-2, "seed": 0}


@pytest.mark.parametrize("n, k, seed", [(13, 5, 0), (10, 5, 1), (7, 2, 3), (5, 5, 0), (100, 3, 2)])
def test_folds_are_disjoint_covering_balanced_and_seeded(n, k, seed):
    items = [f"img{i}" for i in range(n)]
    folds = seeded_folds(items, k, seed)
    assert len(folds) == k and sorted(x for fold in folds for x in fold) == sorted(items)  # covering, disjoint
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert all(fold == sorted(fold, key=items.index) for fold in folds)
    assert seeded_folds(items, k, seed) == folds and seeded_folds(items, k, seed + 1) != folds


@pytest.mark.parametrize("n, k", [(4, 5), (3, 1), (3, 0)])
def test_impossible_folds_are_refused(n, k):
    with pytest.raises(InputError, match="folds"):
        seeded_folds(list(range(n)), k, 0)


def splits_of(n: int, test_fraction: float, test_given: bool = False) -> DataSplits:
    """Splits of a dataset of n items (no files: the rule reads only the sizes), drawn as open_dataset draws them."""
    train, val, test = seeded_splits(n, 0.2, 0, 0.0 if test_given else test_fraction)
    test = list(range(n, n + 12)) if test_given else test
    info = {"path": "x", "test_split": "given" if test_given else "seeded 0"}
    return DataSplits(View(None, train), View(None, val), CLASSES, info, View(None, test))


@pytest.mark.parametrize("n, test_fraction, folds, given, k", [
    (16, 0.15, "auto", False, 5),  # a test split of 2 images: k-fold
    (63, 0.15, "auto", False, 5),  # 9 test images: still too few
    (64, 0.15, "auto", False, 0),  # 10 test images: held out
    (400, 0.15, "auto", False, 0),
    (3, 0.15, "auto", False, 2),  # one image per fold, no more
    (2, 0.15, "auto", False, 0),  # one training image: no estimate at all
    (16, 0.0, "auto", False, 0),  # the run asked for no test split
    (16, 0.15, "auto", True, 0),  # a dataset's own test split is its estimate
    (400, 0.15, 3, False, 3),  # asked for: always
    (16, 0.15, 0, False, 0),
])
def test_auto_folds_small_datasets_only(n, test_fraction, folds, given, k):
    assert folds_for(splits_of(n, test_fraction, given), folds, test_fraction) == k


@pytest.mark.parametrize("n, warned", [(16, True), (63, True), (64, False), (400, False)])
def test_a_small_held_out_split_without_folds_says_so(n, warned, caplog):
    with caplog.at_level("WARNING", logger="grounded.distill.splits"):
        assert folds_for(splits_of(n, 0.15), 0, 0.15) == 0
    assert ("--folds auto" in caplog.text) == warned


def test_asked_folds_with_a_given_test_split_are_refused():
    with pytest.raises(InputError, match="test split of its own"):
        folds_for(splits_of(16, 0.15, test_given=True), 5, 0.15)


def test_fold_splits_train_on_the_rest_and_keep_validation():
    splits = splits_of(16, 0.0)
    folds = fold_splits(splits, 4, seed=0)
    assert sorted(i for f in folds for i in f.test.indices) == splits.train.indices
    for fold in folds:
        assert sorted(fold.train.indices + fold.test.indices) == splits.train.indices
        assert not set(fold.train.indices) & set(fold.test.indices) and fold.val is splits.val


@pytest.mark.parametrize("config, expected", [
    ({"budget_minutes": 6.0}, {"budget_minutes": 1.0, "epochs": None}),  # k + 1 = 6 equal shares
    ({}, {"budget_minutes": 5.0, "epochs": None}),  # the default 30-minute budget, shared
    ({"epochs": 3}, {"budget_minutes": None, "epochs": 3}),  # a length in epochs: every student the same
    ({"max_steps": 7}, {"budget_minutes": None, "max_steps": 7}),
])
def test_fold_students_train_as_the_kept_one_on_a_share_of_a_budget(monkeypatch, tmp_path, config, expected):
    import grounded.distill.workflow as workflow

    seen = []

    def fake_train(splits, out, student, cfg, **kwargs):  # noqa: ANN001, ANN202
        seen.append((splits, cfg))
        return TrainResult(Path(out), 0.5, 0, 2, test={"miou": 0.4, "images": len(splits.test)})

    monkeypatch.setattr(workflow, "train", fake_train)
    rows = workflow.train_folds(splits_of(16, 0.0), tmp_path, StudentConfig(), TrainConfig(**config, folds=5))
    assert [r["images"] for r in rows] == [len(s.test) for s, _ in seen] and len(rows) == 5
    for _, cfg in seen:
        assert cfg.folds == 0 and {key: getattr(cfg, key) for key in expected} == expected


def colour(batch: np.ndarray) -> np.ndarray:
    """A student that calls red pixels disc and blue ones square."""
    r, b = batch[:, 0], batch[:, 2]
    return np.stack([np.ones_like(r), 10 * (r - b), 10 * (b - r)], axis=1).astype(np.float32)


def blind(batch: np.ndarray) -> np.ndarray:
    """A student that calls everything background."""
    logits = np.zeros((1, 3, *batch.shape[2:]), np.float32)
    logits[:, 0] = 1.0
    return logits


def test_pooled_confusion_is_the_sum_of_the_folds(coco_dataset):
    splits = open_dataset(coco_dataset, 0.2, seed=0)
    folds = fold_splits(splits, 3, seed=0)
    students = [(StudentPredictor(fn, CLASSES, 48, 1), fold.test) for fn, fold in zip((colour, blind, colour), folds, strict=True)]
    pooled = evaluate_folds(students, progress=False)
    confusion = np.sum([fold["confusion"] for fold in pooled["folds"]], axis=0)
    assert pooled["confusion"] == confusion.tolist() and pooled["estimate"] == "k-fold, k=3"
    assert pooled["images"] == len(splits.train) == sum(fold["images"] for fold in pooled["folds"])
    scores = semantic_scores(confusion, CLASSES)
    assert pooled["miou"] == pytest.approx(scores["miou"]) and pooled["per_class_iou"] == pytest.approx(scores["per_class_iou"])
    low, high = pooled["miou_ci"]
    assert low <= pooled["miou"] <= high
    for (predictor, view), fold in zip(students, pooled["folds"], strict=True):  # each fold as evaluate scores it
        assert fold["miou"] == pytest.approx(evaluate_student(predictor, view, progress=False)["miou"])
    assert pooled["folds"][1]["miou"] == 0.0 < pooled["folds"][0]["miou"]  # the blind student's fold


@pytest.mark.parametrize("argv, folds", [([], 0), (["--folds", "auto"], "auto"), (["--folds", "4"], 4)])
def test_the_folds_flag_reaches_the_config(argv, folds):
    from grounded.cli import build_parser
    from grounded.cli.train import configs_from_args

    for command in (["train", "data"], ["distill", "images", "--classes", "car"]):
        _, config = configs_from_args(build_parser().parse_args([*command, "--out", "run", *argv]))
        assert config.folds == folds


@pytest.mark.parametrize("folds", ["1", "some", -2])
def test_a_bad_folds_value_is_refused(folds):
    with pytest.raises(InputError, match="folds"):
        TrainConfig(folds=folds)


@pytest.fixture(scope="module")
def kfold_run(coco_dataset, tmp_path_factory):
    from grounded.distill.workflow import train_run

    out = tmp_path_factory.mktemp("kfold") / "run"
    config = TrainConfig(**QUICK, folds="auto")  # 16 images: a test split of 2, so k-fold
    return out, train_run(coco_dataset, out, StudentConfig(size="tiny"), config, export=False, progress=False)


def test_a_small_dataset_scores_by_k_fold_and_the_run_says_so(kfold_run):
    out, summary = kfold_run
    assert summary["estimate"] == "k-fold, k=5" and "test_miou" not in summary
    assert len(summary["folds"]) == 5 and summary["kfold_images"] == sum(f["images"] for f in summary["folds"]) == 13
    assert summary["val_kfold_gap"] == pytest.approx(json.loads((out / "eval" / "metrics.json").read_text())["gap"]["miou"])
    assert json.loads((out / "summary.json").read_text()) == summary
    record = json.loads((out / "student.json").read_text())
    assert record["train"]["folds"] == 5 and record["train"]["test_fraction"] == 0.0 and record["test_images"] == 0
    assert json.loads((out / "split.json").read_text())["info"]["estimate"] == "k-fold, k=5"
    held_out = set()
    for i in range(1, 6):  # each fold student held out its fold, and the folds cover the kept student's training set
        split = json.loads((out / "folds" / f"fold{i}" / "split.json").read_text())
        assert split["val"] == json.loads((out / "split.json").read_text())["val"]
        held_out |= set(split["test"])
    assert held_out == set(json.loads((out / "split.json").read_text())["train"])


def test_evaluate_reports_validation_beside_the_k_fold_estimate(kfold_run):
    from grounded.distill.workflow import evaluate_run

    out, summary = kfold_run
    metrics, where = evaluate_run(out, out=out / "again", progress=False)
    assert metrics["estimate"] == "k-fold, k=5" and metrics["test"]["images"] == 13 and metrics["images"] == 3
    assert metrics["test"]["miou"] == pytest.approx(summary["kfold_miou"])  # the same students, the same folds
    text = (where / "metrics.txt").read_text()
    assert text == format_table(metrics) + "\n" and "k-fold IoU" in text and "gap (val - k-fold)" in text


def test_a_finished_k_fold_run_resumes_without_training(kfold_run, coco_dataset):
    from grounded.distill.workflow import train_run

    out, summary = kfold_run
    again = train_run(coco_dataset, out, StudentConfig(size="tiny"), TrainConfig(**QUICK, folds="auto"),
                      export=False, progress=False)
    same = lambda rows: [{k: v for k, v in row.items() if k != "minutes"} for row in rows]  # noqa: E731
    assert again["kfold_miou"] == summary["kfold_miou"] and same(again["folds"]) == same(summary["folds"])


def test_a_large_dataset_keeps_its_held_out_test_split(tmp_path):
    from grounded.distill.workflow import train_run

    write_coco(tmp_path / "data", n=70)  # a test split of 10 images
    summary = train_run(tmp_path / "data", tmp_path / "run", StudentConfig(size="tiny"),
                        TrainConfig(**QUICK, folds="auto"), export=False, evaluate=True, progress=False)
    assert summary["estimate"] == "held-out test" and summary["test_images"] == 10 and "folds" not in summary
    assert summary["eval"]["estimate"] == "held-out test" and not (tmp_path / "run" / "folds").exists()
