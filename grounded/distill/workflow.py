"""The steps the command line chains: train -> export -> evaluate, on run folders.

- :func:`train_run`: train (or resume) into a run folder, export ``student.onnx``, optionally evaluate;
- :func:`evaluate_run`: score a run's best student (or its ONNX export, or a teacher's label run) on the
  run's own validation and test splits side by side (with the val - test gap), or on all of any dataset
  given (one split of it only when asked);
- :func:`default_lr`: a peak learning rate that suits the architecture;
- :func:`distill`: label with the teacher (labels reused while its full identity is unchanged), then train_run.

Each returns plain dicts / paths; the CLI modules only parse arguments and print.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grounded.distill.checkpoint import load_student, read_record
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import DataSplits, View, open_dataset
from grounded.distill.evaluate import evaluate_labels, evaluate_student, side_by_side, write_report
from grounded.distill.export import export_onnx
from grounded.distill.predictor import StudentPredictor
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
    dataset: str | Path,
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
    ``on_step``: see :func:`grounded.distill.train.train`."""
    result = train(dataset, out, student, config, resume=resume, progress=progress, on_step=on_step)
    summary: dict[str, Any] = {"run": str(result.out), "steps": result.steps, "planned_steps": result.planned_steps,
                               "final_lr": result.final_lr, "train_minutes": round(result.seconds / 60, 2),
                               "best_val_miou": result.best_miou, "best_epoch": result.best_epoch,
                               "stopped_early": result.stopped_early, "params": int(result.profile["params"]),
                               "gflops": round(result.profile["gflops"], 3), "image_size": config.image_size}
    if result.test is not None:  # both letterboxed at the training size; the test split chose nothing
        summary.update(test_miou=result.test["miou"], val_test_gap=result.best_miou - result.test["miou"],
                       test_images=result.test["images"])
    if result.best_epoch < 0:
        raise InputError(f"training in {out} ran no validation, so no student was kept; train for longer")
    if export:
        summary["onnx"] = str(export_run(out))
    if evaluate:
        metrics, where = evaluate_run(out, progress=progress)
        summary["eval"] = {"dir": str(where), "miou": metrics["miou"], "mask_ap": metrics["mask_ap"],
                           "test_miou": metrics.get("test", {}).get("miou")}
    atomic_write_text(Path(out) / "summary.json", json.dumps(summary, indent=2))
    return summary


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
    recorded in ``split.json``; ``side_by_side``: the val - test gap), or on ``split``. With ``data`` (an
    external dataset) it is scored on all of it, or on ``split`` ("val" / "test" / "train") of it, split with
    the run's seed and fractions. ``tta_flip``: override the student's test-time flip setting.
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
