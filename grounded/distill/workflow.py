"""The steps the command line chains: train -> export -> evaluate, on run folders.

- :func:`train_run`: train (or resume) into a run folder, export ``student.onnx``, optionally evaluate;
  the run's honest estimate is its held-out test split, or k-fold (:func:`by_estimate`, :func:`train_folds`);
- :func:`evaluate_run`: score a run's best student (or its ONNX export, or a teacher's label run) on the
  run's own validation split beside its estimate (the test split, or its fold students each on its fold,
  pooled), with the gap, or on all of any dataset given (one split of it only when asked);
- :func:`default_lr`: a peak learning rate that suits the architecture;
- :func:`distill`: label with the teacher (labels reused while its full identity is unchanged), then train_run.

Each returns plain dicts / paths; the CLI modules only parse arguments and print.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from grounded.distill.checkpoint import load_student, read_record
from grounded.distill.config import DEFAULT_BUDGET_MINUTES, StudentConfig, TrainConfig
from grounded.distill.data import DataSplits, View, open_dataset
from grounded.distill.evaluate import (
    evaluate_folds,
    evaluate_labels,
    evaluate_student,
    side_by_side,
    write_report,
)
from grounded.distill.export import export_onnx
from grounded.distill.predictor import StudentPredictor
from grounded.distill.splits import HELD_OUT, fold_splits, folds_for, kfold_name
from grounded.distill.train import train
from grounded.errors import InputError
from grounded.formats.files import atomic_write_text

logger = logging.getLogger(__name__)


def default_lr(student: StudentConfig) -> float:
    """2e-3 for FastSeg and 1e-3 for a U-Net from scratch, 1e-4 to fine-tune pretrained weights, 4e-4 for a
    random transformer."""
    if student.arch == "fast":
        return 2e-3
    if student.arch == "unet":
        return 1e-3
    return 1e-4 if student.pretrained else 4e-4


def export_run(run: str | Path) -> Path:
    """Export the best student of ``run`` to ``run/student.onnx``."""
    student, record = load_student(run)
    return export_onnx(student, Path(run) / "student.onnx", record["image_size"])


def train_run(
    dataset: str | Path | DataSplits,
    out: str | Path,
    student: StudentConfig,
    config: TrainConfig,
    resume: bool = True,
    export: bool = True,
    evaluate: bool = False,
    progress: bool = True,
    on_step: Callable[[int, int | None], None] | None = None,
) -> dict[str, Any]:
    """Train, then export and evaluate as asked; returns a summary dict (also written to ``out/summary.json``).
    ``on_step``: see :func:`grounded.distill.train.train` (called by every student a k-fold run trains).

    ``estimate`` in the summary names the honest estimate: "held-out test" (``test_miou``, ``val_test_gap``: at
    the training size, as training validates) or "k-fold, k=K" (``config.folds``; :func:`train_folds` first,
    then the kept student on all the folds; the estimate is scored as :func:`evaluate_run` scores, each image at
    its own resolution: ``kfold_miou`` with ``kfold_miou_ci``, ``val_kfold_gap``, per fold ``folds``)."""
    started = time.monotonic()
    splits = (dataset if isinstance(dataset, DataSplits)
              else open_dataset(dataset, config.val_fraction, config.seed, test_fraction=config.test_fraction))
    splits, config = by_estimate(splits, config)
    folds = train_folds(splits, out, student, config, resume, progress, on_step) if config.folds else None
    budget = _budget_minutes(config)
    if folds and budget:  # the kept student gets what the fold students left, at least their share
        config = replace(config, budget_minutes=max(budget / (config.folds + 1), budget - (time.monotonic() - started) / 60))
    result = train(splits, out, student, config, resume=resume, progress=progress, on_step=on_step)
    summary: dict[str, Any] = {"run": str(result.out), "steps": result.steps, "planned_steps": result.planned_steps,
                               "final_lr": result.final_lr, "train_minutes": round(result.seconds / 60, 2),
                               "best_val_miou": result.best_miou, "best_epoch": result.best_epoch,
                               "stopped_early": result.stopped_early, "params": int(result.profile["params"]),
                               "gflops": round(result.profile["gflops"], 3), "image_size": config.image_size,
                               "estimate": splits.info["estimate"]}
    if result.test is not None:  # both letterboxed at the training size; the test split chose nothing
        summary.update(test_miou=result.test["miou"], val_test_gap=result.best_miou - result.test["miou"],
                       test_images=result.test["images"])
    if result.best_epoch < 0:
        raise InputError(f"training in {out} ran no validation, so no student was kept; train for longer")
    if export:
        summary["onnx"] = str(export_run(out))
    metrics, where = evaluate_run(out, progress=progress) if evaluate or folds else (None, None)
    if folds and metrics is not None:
        kfold = metrics["test"]
        summary.update(kfold_miou=kfold["miou"], kfold_miou_ci=kfold["miou_ci"], kfold_images=kfold["images"],
                       val_kfold_gap=metrics["gap"]["miou"], folds_minutes=round(sum(f["minutes"] for f in folds), 2),
                       folds=[{**row, "miou": scored["miou"]} for row, scored in zip(folds, kfold["folds"], strict=True)])
    if evaluate and metrics is not None:
        summary["eval"] = {"dir": str(where), "miou": metrics["miou"], "mask_ap": metrics["mask_ap"],
                           "test_miou": metrics.get("test", {}).get("miou"), "estimate": metrics.get("estimate")}
    atomic_write_text(Path(out) / "summary.json", json.dumps(summary, indent=2))
    return summary


def _budget_minutes(config: TrainConfig) -> float | None:
    """The run's wall-time budget in minutes by the rule of ``grounded.distill.train._plan`` (a length in epochs
    or steps wins over it); None when the run counts steps."""
    if config.total_steps or config.epochs or (config.budget_minutes is None and config.max_steps):
        return None
    return config.budget_minutes or DEFAULT_BUDGET_MINUTES


def by_estimate(splits: DataSplits, config: TrainConfig) -> tuple[DataSplits, TrainConfig]:
    """The splits and config a run trains with, its estimate decided (:func:`grounded.distill.splits.folds_for`)
    and named in ``splits.info["estimate"]``: as given, with ``folds`` 0, for a held-out test split; for k-fold,
    ``folds`` k and ``test_fraction`` 0, the splits drawn again without a seeded test split (its images join
    the folds; validation is drawn as a run without a test split draws it, so ``evaluate`` finds it again)."""
    k = folds_for(splits, config.folds, config.test_fraction)
    if not k:
        splits.info["estimate"] = HELD_OUT if splits.test is not None and len(splits.test) else "none"
        return splits, replace(config, folds=0)
    if splits.test is not None and len(splits.test):
        if "path" not in splits.info:
            raise InputError("k-fold needs the dataset's path to draw its splits again (open it with open_dataset)")
        splits = open_dataset(splits.info["path"], config.val_fraction, config.seed, test_fraction=0.0)
    splits.info["estimate"] = kfold_name(k)
    return splits, replace(config, folds=k, test_fraction=0.0)


def train_folds(splits: DataSplits, out: str | Path, student: StudentConfig, config: TrainConfig, resume: bool = True,
                progress: bool = True, on_step: Callable[[int, int | None], None] | None = None) -> list[dict[str, Any]]:
    """Train the ``config.folds`` (k) students of a k-fold run into ``out/folds/fold1`` .. ``foldK``
    (:func:`grounded.distill.splits.fold_splits`): each on the other folds, choosing its checkpoint with
    ``splits.val``, scored once on its fold after training (at the training size). Each trains as the kept
    student will: the same epochs or steps, or a budget's 1 / (k + 1) share. Resumable like any run. Returns
    per fold: ``fold``, ``train_images``, ``images``, ``steps``, ``best_val_miou``, ``fold_miou``, ``minutes``."""
    k, budget = config.folds, _budget_minutes(config)
    each = replace(config, folds=0, **({"budget_minutes": budget / (k + 1)} if budget else {}))
    logger.info("%s: %d students on %d images (%s each), then the kept one", kfold_name(k), k, len(splits.train),
                f"{each.budget_minutes:.1f} min" if budget else "the run's length")
    rows = []
    for i, fold in enumerate(fold_splits(splits, k, config.seed), 1):
        result = train(fold, Path(out) / "folds" / f"fold{i}", student, each, resume=resume, progress=progress,
                       on_step=on_step)
        if result.best_epoch < 0 or result.test is None:
            raise InputError(f"fold {i} of {k} in {out} ran no validation, so no student was kept; train for longer")
        rows.append({"fold": i, "train_images": len(fold.train), "images": len(fold.test), "steps": result.steps,
                     "best_val_miou": result.best_miou, "fold_miou": result.test["miou"],
                     "minutes": round(result.seconds / 60, 2)})
    return rows


def _views(splits: DataSplits, split: str | None) -> dict[str, list[View]]:
    """The views to score by name: ``split`` of ``splits`` ("val" brings "test" beside it when there is one), or
    all of them ("all": None)."""
    if split not in (None, "all", "val", "train", "test"):
        raise InputError(f"--split must be 'all', 'val', 'test' or 'train', got {split!r}")
    views = splits.views()
    if split in (None, "all"):
        return {"all": list(views.values())}
    if split not in views:
        raise InputError(f"dataset {splits.info.get('path')} has no {split} split (the run kept none: test_fraction "
                         "0, or too few images); pick another --split")
    return {split: [views[split]], **({"test": [views["test"]]} if split == "val" and "test" in views else {})}


def _check_split(folder: Path, splits: DataSplits) -> None:
    """Refuse a test split that is not the one the run held out (``split.json``): the dataset has changed."""
    recorded = json.loads((folder / "split.json").read_text()) if (folder / "split.json").is_file() else None
    if recorded is None:
        return
    names = sorted(Path(p).name for p in splits.files().get("test", []))
    if names != sorted(Path(p).name for p in recorded.get("test", [])):
        raise InputError(f"{folder / 'split.json'}: the run held out other test images than the dataset now gives "
                         f"({len(recorded.get('test', []))} recorded, {len(names)} now); has the dataset changed? "
                         "Score it on all of a dataset with --data")


def _fold_students(folder: Path, splits: DataSplits, train_cfg: dict[str, Any], tta_flip: bool) -> list[tuple]:
    """(predictor, held-out fold) of each fold student of the k-fold run in ``folder``, its folds checked."""
    students = []
    for i, fold in enumerate(fold_splits(splits, int(train_cfg["folds"]), train_cfg.get("seed", 0)), 1):
        where = folder / "folds" / f"fold{i}"
        if not (where / "student.json").is_file():
            raise InputError(f"{where} holds no fold student; run the same `grounded train` again to finish the run")
        _check_split(where, fold)
        predictor = StudentPredictor.load(where)
        predictor.tta_flip = tta_flip
        students.append((predictor, fold.test))
    return students


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    split: str | None = None,
    out: str | Path | None = None,
    pairs: int = 0,
    progress: bool = True,
    tta_flip: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate and write the report; returns (metrics, report folder).

    ``run``: a training run folder, a ``.safetensors`` or a ``.onnx`` student. Without ``data`` it is scored on
    its training dataset's validation split and, side by side, on its test split (the held-out images the run
    recorded in ``split.json``; ``side_by_side``: the val - test gap) or, for a k-fold run, its fold students
    each on its held-out fold, pooled (:func:`grounded.distill.evaluate.evaluate_folds`), or on ``split``. With
    ``data`` (an external dataset) it is scored on all of it, or on ``split`` ("val" / "test" / "train") of it,
    split with the run's seed and fractions. ``tta_flip``: override the student's test-time flip setting.
    Or a ``grounded label`` run (``run.json``, no student): its labels are scored against ``data``.
    """
    run = Path(run)
    folder = run if run.is_dir() else run.parent
    if run.is_dir() and (run / "run.json").is_file() and not (run / "student.json").is_file():
        if data is None:
            raise InputError(f"{run} is a label run: give the ground truth to compare its labels with (--data)")
        labels, truth = open_dataset(run), open_dataset(data)
        metrics = evaluate_labels(list(labels.views().values()), list(truth.views().values()), out, pairs, progress)
        metrics["labels"], metrics["truth"] = str(run), str(data)
    else:
        predictor = StudentPredictor.load(run)
        predictor.tta_flip = predictor.tta_flip if tta_flip is None else bool(tta_flip)
        meta = folder / "student.json"
        record = read_record(meta)[0] if meta.is_file() else {}
        train_cfg = record.get("train", {})
        if data is None and "data" not in record:
            raise InputError(f"{run}: no training record beside it to find its dataset; pass --data")
        source = data if data is not None else record["data"]["path"]
        split = split or ("val" if data is None else "all")
        splits = open_dataset(source, train_cfg.get("val_fraction", 0.2), train_cfg.get("seed", 0),
                              test_fraction=train_cfg.get("test_fraction", 0.0))  # older runs kept no test split
        if data is None:
            _check_split(folder, splits)
        where = Path(out) if out is not None else folder / "eval"
        scored = {name: evaluate_student(predictor, views, where, pairs if name == split else 0, progress)
                  for name, views in _views(splits, split).items()}
        if data is None and split == "val" and train_cfg.get("folds"):  # a k-fold run: its folds, pooled
            scored["test"] = evaluate_folds(_fold_students(folder, splits, train_cfg, predictor.tta_flip), progress)
        metrics = side_by_side(scored["val"], scored["test"]) if len(scored) == 2 else scored[split]
        metrics["model"], metrics["data"], metrics["split"] = str(run), str(source), split
        metrics["tta_flip"] = predictor.tta_flip
    where = Path(out) if out is not None else folder / "eval"
    write_report(metrics, where)
    return metrics, where


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """``"key: old -> new"`` for every value that differs between two JSON values (nested keys joined by dots; a
    missing mapping counts as an empty one)."""
    if isinstance(old, dict) or isinstance(new, dict):
        old, new = (value if value is not None else {} for value in (old, new))
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in sorted(set(old) | set(new), key=str)
                for change in _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]
    return [] if old == new else [f"{path}: {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"]


def label_changes(labels: Path, images: Path, ontology, teacher: dict[str, Any]) -> list[str]:  # noqa: ANN001
    """What differs between the label run in ``labels`` (none: []) and labelling ``images`` with ``ontology`` by
    a teacher whose ``describe()`` is ``teacher``: one phrase per changed setting, e.g.
    ``"teacher options.box_threshold: 0.35 -> 0.5"`` (compared as the run's manifest records them)."""
    from grounded.label.manifest import MANIFEST, build_manifest, read_manifest

    if not (labels / MANIFEST).is_file():
        return []
    old, new = read_manifest(labels), build_manifest(images, ontology, teacher, {}, 0)
    changes = []
    if old.get("images_root") != new["images_root"]:
        changes.append(f"images folder: {old.get('images_root')!r} -> {new['images_root']!r}")
    if old.get("ontology_fingerprint") != new["ontology_fingerprint"]:
        changes.append(f"ontology: classes {old.get('classes')} -> {new['classes']} (or their phrases or thresholds)")
    if old.get("model_fingerprint") != new["model_fingerprint"]:
        changes += [f"teacher {change}" for change in _differences(old.get("model"), new["model"])]
    return changes


def distill(
    images: str | Path,
    ontology,  # noqa: ANN001
    out: str | Path,
    student: StudentConfig,
    config: TrainConfig,
    predictor=None,  # noqa: ANN001
    progress: bool = True,
    resume: bool = True,
    force: bool = False,
    **predictor_options: Any,
) -> dict[str, Any]:
    """Label ``images`` with the teacher into ``out/labels``, then train, export and evaluate a student into
    ``out/student``. Returns the summary (also ``out/distill.json``).

    ``predictor``: the teacher (default ``grounded.Predictor(**predictor_options)``); ``ontology``: an Ontology,
    a YAML path or class names. The teacher is loaded on every call: its full identity (``describe()``: models,
    dtype, every option, speed settings, CLIP) is compared with the one ``out/labels`` was made with, with the
    images folder and the ontology. Equal: the labels are reused (an unfinished run resumes). Different: refused,
    naming each changed setting, unless ``force``, which labels again from scratch and retrains the student from
    scratch. ``resume=False``: train the student from scratch (the labels are still reused).
    """
    from grounded.label import label
    from grounded.label.runner import as_ontology

    out, images, ontology = Path(out), Path(images), as_ontology(ontology)
    labels = out / "labels"
    if predictor is None:
        from grounded.pipeline.predictor import Predictor

        predictor = Predictor(**predictor_options)
    elif predictor_options:
        raise InputError(f"options {sorted(predictor_options)} apply to the default teacher only; set them on yours")
    changes = label_changes(labels, images, ontology, predictor.describe())
    if changes and not force:
        raise InputError(f"{labels} holds labels made with other settings ({'; '.join(changes)}); pass --force to "
                         "label again with these (the student is then retrained), or use another --out")
    if changes:
        logger.warning("--force: labelling %s again (%s)", labels, "; ".join(changes))
    done = label(images, ontology, labels, predictor=predictor, formats=["coco"], seed=config.seed, force=force,
                 progress=progress)
    reused = done.processed == 0 and done.resumed > 0
    if reused:
        logger.info("reused the finished label run in %s", labels)
    summary = train_run(labels, out / "student", student, config, resume=resume and not changes, export=True,
                        evaluate=True, progress=progress)
    result = {"labels": str(labels), "labels_reused": reused, "relabelled": bool(changes), **summary}
    atomic_write_text(out / "distill.json", json.dumps(result, indent=2))
    return result
