"""Evaluation of a student (or of the teacher's own labels) against ground truth.

``evaluate_student(predictor, views)`` runs a :class:`~grounded.distill.predictor.StudentPredictor` on every
item of one or more data :class:`~grounded.distill.data.View` at the image's own resolution; a student with
a boundary head is scored twice for instances: boundary-aware (``mask_ap``, what ``predict`` returns) and by
connected components of its class map (``mask_ap_components``), side by side; ``evaluate_labels(labels,
truth)`` scores one labelled dataset (e.g. a ``grounded label`` run) against another, images matched by file
name. Both return one dict (see :mod:`grounded.distill.metrics` for the definitions)::

    {"images": 80, "miou": 0.61, "pixel_accuracy": 0.93, "background_iou": 0.95,
     "per_class_iou": {"wheel": 0.78, ...}, "mask_ap": 0.31, "mask_ap50": 0.55, "mask_ap75": 0.30,
     "per_class_ap": {"wheel": 0.52, ...}, "instances": "boundary", "miou_ci": [0.57, 0.65], "ci_level": 0.95,
     "mask_ap_components": 0.29, "mask_ap50_components": 0.52}

:func:`write_report` writes it as ``metrics.json`` and a readable ``metrics.txt`` table; with ``pairs=N`` the
first N images also get ``pairs/NAME.png``: image | ground truth | prediction, side by side.
Memory stays small: per image one (K + 1)^2 confusion matrix (for the mIoU's seeded bootstrap interval over
images, ``miou_ci``) and RLE masks for mask AP are kept. :func:`evaluate_folds` scores a k-fold run's fold
students each on its held-out fold and pools the images into one such result (``estimate``: "k-fold, k=5").
:func:`side_by_side` joins a run's validation result and its estimate (``test``: the held-out test split or the
pooled folds; ``estimate`` names which; ``gap``: val - test), :func:`format_table` prints them in columns.
:func:`plot_history` draws a training run's losses and validation mIoU, with its test mIoU as one point
(``training_curve.png``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PIL import Image
from tqdm.auto import tqdm

from grounded.distill.instances import probs_to_detections
from grounded.distill.metrics import MaskAP, bootstrap_miou, confusion_matrix, mean_iou, semantic_scores
from grounded.distill.splits import HELD_OUT, kfold_name
from grounded.errors import InputError
from grounded.formats.files import atomic_path, atomic_write_text
from grounded.utils.masks import rasterize_semantic

logger = logging.getLogger(__name__)

CI_LEVEL, CI_ROUNDS = 0.95, 1000  # the mIoU's bootstrap interval over images (grounded.distill.metrics)

# name, image, truth (semantic, instances), prediction (semantic, instances), instances by connected components
Item = tuple[str, np.ndarray, np.ndarray, sv.Detections, np.ndarray, sv.Detections, "sv.Detections | None"]


def palette(num_classes: int) -> np.ndarray:
    """(256, 3) uint8 colours: 0 black (background), 255 grey (ignored), classes from supervision's palette."""
    colours = np.full((256, 3), 128, dtype=np.uint8)
    colours[0] = 0
    default = sv.ColorPalette.DEFAULT
    for c in range(1, min(num_classes, 255)):
        colours[c] = default.by_idx(c - 1).as_rgb()
    return colours


def save_pair(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, path: Path, num_classes: int) -> None:
    """Image (H, W, 3) | truth (H, W) | prediction (H, W) as one PNG, classes blended over the image."""
    colours = palette(num_classes)

    def overlay(semantic: np.ndarray) -> np.ndarray:
        blend = (0.45 * image + 0.55 * colours[semantic]).astype(np.uint8)
        return np.where((semantic == 0)[..., None], image, blend)

    gap = np.full((image.shape[0], 4, 3), 255, dtype=np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate([image, gap, overlay(truth), gap, overlay(predicted)], axis=1)).save(tmp, format="PNG")


def _score(items: Iterator[Item], class_names: Sequence[str], total: int, pairs_dir: Path | None, pairs: int,
           progress: bool) -> tuple[dict[str, Any], np.ndarray]:
    """The result of scoring ``items``, and their (N, C, C) per-image confusion matrices."""
    num_classes = len(class_names) + 1
    per_image = []  # (C, C) per image: C * C * 8 bytes each, for the bootstrap interval
    ap, ap_components = MaskAP(class_names), MaskAP(class_names)
    for n, (name, image, truth_sem, truth, pred_sem, pred, pred_components) in enumerate(
        tqdm(items, total=total, desc="evaluate", disable=not progress, dynamic_ncols=True)
    ):
        if pred_sem.shape != truth_sem.shape:
            raise InputError(f"{name}: prediction {pred_sem.shape} and labels {truth_sem.shape} differ in size")
        per_image.append(confusion_matrix(pred_sem, truth_sem, num_classes))
        ap.add(truth, pred, truth_sem.shape)
        if pred_components is not None:
            ap_components.add(truth, pred_components, truth_sem.shape)
        if pairs_dir is not None and n < pairs:
            pairs_dir.mkdir(parents=True, exist_ok=True)
            save_pair(image, truth_sem, pred_sem, pairs_dir / f"{Path(name).stem}.png", num_classes)
    confusions = np.stack(per_image) if per_image else np.zeros((0, num_classes, num_classes), np.int64)
    instance = ap.compute()
    result = {"images": total, **pooled_scores(confusions, class_names), "mask_ap": instance["ap"],
              "mask_ap50": instance["ap50"], "mask_ap75": instance["ap75"], "per_class_ap": instance["per_class_ap"]}
    if ap_components.images:
        components = ap_components.compute()
        result.update(mask_ap_components=components["ap"], mask_ap50_components=components["ap50"])
    return result, confusions


def pooled_scores(confusions: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Semantic scores of images pooled: per-class IoU, mIoU, pixel accuracy of their summed confusion, and the
    mIoU's bootstrap interval over the images, from their (N, C, C) per-image confusion matrices."""
    return {**semantic_scores(confusions.sum(0), class_names),
            "miou_ci": list(bootstrap_miou(confusions, CI_ROUNDS, CI_LEVEL)), "ci_level": CI_LEVEL}


def evaluate_student(predictor, views, out: str | Path | None = None, pairs: int = 0, progress: bool = True) -> dict[str, Any]:  # noqa: ANN001
    """Score a student predictor on every item of ``views`` (a view or a list of them); writes ``out/pairs``
    when ``pairs`` > 0."""
    views = list(views) if isinstance(views, (list, tuple)) else [views]
    pairs_dir = Path(out) / "pairs" if out is not None and pairs else None
    result, _ = _score(_student_items(predictor, views), views[0].class_names, sum(len(v) for v in views),
                       pairs_dir, pairs, progress)
    return {**result, "instances": _instances(predictor)}


def _instances(predictor) -> str:  # noqa: ANN001
    """How the predictor separates instances: "boundary" (its boundary head) or "components"."""
    return "boundary" if predictor.boundary_head and predictor.instances == "boundary" else "components"


def _student_items(predictor, views: Sequence) -> Iterator[Item]:  # noqa: ANN001
    """The items of ``views`` with the predictor's outputs (classes checked against the views' first)."""
    names = list(views[0].class_names)
    if list(predictor.class_names) != names or any(list(v.class_names) != names for v in views):
        raise InputError(f"student classes {predictor.class_names} differ from the dataset's {names}")
    boundary_aware = _instances(predictor) == "boundary"
    for view in views:
        for i in range(len(view)):
            image = view.image(i)
            probs, boundary = predictor.outputs(image)
            pred = predictor.detections(probs, boundary)
            components = probs_to_detections(probs, names, predictor.min_area) if boundary_aware else None
            yield (str(view.image_path(i)), image, view.semantic(i), view.detections(i),
                   probs.argmax(0).astype(np.uint8), pred, components)


def evaluate_folds(folds: Sequence[tuple[Any, Any]], progress: bool = True) -> dict[str, Any]:
    """The k-fold estimate: each fold's student (a predictor) on its held-out fold (a view), the images pooled.

    One result over all the folds' images, as :func:`evaluate_student` gives (per-class IoU and mIoU of the
    summed confusion, its bootstrap interval over images, mask AP of all predictions together), plus
    ``estimate`` ("k-fold, k=K"), ``confusion`` (the summed (C, C) matrix, rows true) and ``folds``: per fold
    its ``images``, ``miou`` and ``confusion`` (the pooled confusion is their sum)."""
    views = [view for _, view in folds]
    items = (item for predictor, view in folds for item in _student_items(predictor, [view]))
    result, confusions = _score(items, views[0].class_names, sum(len(v) for v in views), None, 0, progress)
    bounds = np.cumsum([0, *(len(v) for v in views)])
    per_fold = [confusions[a:b].sum(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return {**result, "instances": _instances(folds[0][0]), "estimate": kfold_name(len(folds)),
            "confusion": confusions.sum(0).tolist(),
            "folds": [{"images": len(view), "miou": float(mean_iou(confusion)), "confusion": confusion.tolist()}
                      for view, confusion in zip(views, per_fold, strict=True)]}


def evaluate_labels(labels: Sequence, truth: Sequence, out: str | Path | None = None, pairs: int = 0,
                    progress: bool = True) -> dict[str, Any]:
    """Score labelled views ``labels`` (e.g. the teacher's train + val) against ``truth`` views, matched by file name."""
    names = [list(v.class_names) for v in [*labels, *truth]]
    if any(n != names[0] for n in names):
        raise InputError(f"label classes {names[0]} differ from the ground truth's {names[-1]}")
    by_name = {Path(v.image_path(i)).name: (v, i) for v in labels for i in range(len(v))}
    matched = [(t, i, by_name[Path(t.image_path(i)).name]) for t in truth for i in range(len(t))
               if Path(t.image_path(i)).name in by_name]
    if not matched:
        raise InputError("no image of the ground truth appears in the labels (matched by file name)")

    def items() -> Iterator[Item]:
        for t, i, (lv, j) in matched:
            image, pred = t.image(i), lv.detections(j)
            shape = image.shape[:2]
            pred_sem = rasterize_semantic(pred.mask, pred.class_id, shape, pred.confidence) if len(pred) else np.zeros(shape, np.uint8)
            yield str(t.image_path(i)), image, t.semantic(i), t.detections(i), pred_sem, pred, None

    pairs_dir = Path(out) / "pairs" if out is not None and pairs else None
    return _score(items(), names[0], len(matched), pairs_dir, pairs, progress)[0]


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def side_by_side(val: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """One result for the validation split (the top-level keys, as before) with the honest estimate's result
    under ``test`` (the held-out test split, or the pooled folds of :func:`evaluate_folds`), ``estimate``
    naming which ("held-out test" or "k-fold, k=K"), and ``gap``: val - test for mIoU, pixel accuracy, mask AP
    and per-class IoU (positive: the split that chose the checkpoint flatters it)."""
    gap = {key: _difference(val.get(key), test.get(key)) for key in ("miou", "pixel_accuracy", "mask_ap", "mask_ap50")}
    gap["per_class_iou"] = {name: _difference(v, test["per_class_iou"].get(name)) for name, v in val["per_class_iou"].items()}
    return {**val, "test": test, "estimate": test.get("estimate", HELD_OUT), "gap": gap}


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


def _summary(result: dict[str, Any], label: str = "") -> str:
    low, high = result.get("miou_ci") or (None, None)
    interval = f" [{100 * result.get('ci_level', CI_LEVEL):.0f}% CI {_fmt(low).strip()}-{_fmt(high).strip()}]" if low is not None else ""
    return (f"{label}mIoU {_fmt(result['miou'])}{interval}   pixel accuracy {_fmt(result['pixel_accuracy'])}   "
            f"mask AP {_fmt(result['mask_ap'])}   AP50 {_fmt(result['mask_ap50'])}   ({result['images']} images)")


def format_table(result: dict[str, Any]) -> str:
    """The result as a fixed-width table (percentages): one row per class, then the summary (mIoU with its
    bootstrap interval). With ``test`` (:func:`side_by_side`): IoU and AP of val and of the estimate (the test
    split, or k-fold), and the gap."""
    names, test = list(result["per_class_iou"]), result.get("test")
    kfold = test is not None and result.get("estimate", HELD_OUT) != HELD_OUT
    column = "k-fold" if kfold else "test"
    width = max([len(n) for n in names] + [10])
    if test is None:
        header = f"{'class':<{width}}   IoU %   AP %"
        rows = [f"{_fmt(result['per_class_iou'][n])}  {_fmt(result['per_class_ap'].get(n))}" for n in names]
        background = _fmt(result["background_iou"])
    else:
        pad = " " * (len(column) - len("test"))  # the estimate's columns are as wide as its name
        header = f"{'class':<{width}}   val IoU  {column} IoU  gap     val AP  {column} AP"
        rows = [f"{_fmt(result['per_class_iou'][n])}   {pad}{_fmt(test['per_class_iou'].get(n))}  "
                f"{_fmt(result['gap']['per_class_iou'][n])}   {_fmt(result['per_class_ap'].get(n))}  "
                f"{pad}{_fmt(test['per_class_ap'].get(n))}" for n in names]
        background = f"{_fmt(result['background_iou'])}   {pad}{_fmt(test['background_iou'])}"
    lines = [header, "-" * len(header), *(f"{n:<{width}}  {row}" for n, row in zip(names, rows, strict=True)),
             "-" * len(header), f"{'background':<{width}}  {background}"]
    if test is None:
        lines.append(_summary(result))
    else:
        chose_nothing = (f"each image scored by the one of {len(test['folds'])} fold students that neither trained "
                         "nor chose with it" if kfold else "the test split chose nothing")
        lines += [_summary(result, "val     "), _summary(test, f"{column:<8}"),
                  f"gap (val - {column}): mIoU {_fmt(result['gap']['miou'])} points; the val split chose the "
                  f"checkpoint, {chose_nothing}"]
        if kfold:
            lines.append(f"estimate: {result['estimate']} (of the recipe: the kept student trained on all the folds)")
    if "mask_ap_components" in result:
        lines.append(f"instances: boundary-aware (above) | connected components: mask AP "
                     f"{_fmt(result['mask_ap_components'])}   AP50 {_fmt(result['mask_ap50_components'])}"
                     + (" (val)" if test is not None else ""))
    return "\n".join(lines)


def plot_history(history: list[dict[str, Any]], path: Path, test: dict[str, Any] | None = None) -> Path:
    """Training and validation loss, and validation mIoU, against optimiser steps, as a PNG; ``test`` (``step``,
    ``miou``: the kept student scored once on the test split after training) is marked as one point."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(steps, [h["train_loss"] for h in history], marker="o", label="train loss (mean since last validation)")
    left.plot(steps, [h["val_loss"] for h in history], marker="o", label="val loss")
    left.set_xlabel("step")
    left.legend()
    right.plot(steps, [h["miou"] for h in history], marker="o", color="tab:green", label="val mIoU")
    right.plot(steps, [h["pixel_accuracy"] for h in history], marker="o", color="tab:gray", label="val pixel acc")
    if test is not None:
        right.plot([test["step"]], [test["miou"]], marker="*", markersize=14, linestyle="none", color="tab:red",
                   label=f"test mIoU {test['miou']:.3f} ({test['images']} images)")
        fig.text(0.5, 0.01, "test: the kept student scored once after training on images that chose nothing "
                 "(not the checkpoint, not the budget); val mIoU chose the checkpoint, so it is optimistic",
                 ha="center", fontsize=8)
    right.set_xlabel("step")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout(rect=(0, 0.04 if test is not None else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write ``out/metrics.json`` and ``out/metrics.txt``; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    atomic_write_text(out / "metrics.txt", format_table(result) + "\n")
    return out / "metrics.json", out / "metrics.txt"
