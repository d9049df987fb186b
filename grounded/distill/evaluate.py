"""Evaluation of a student (or of the teacher's own labels) against ground truth.

``evaluate_student(predictor, views)`` runs a :class:`~grounded.distill.predictor.StudentPredictor` on every
item of one or more data :class:`~grounded.distill.data.View` at the image's own resolution; a student with
a boundary head is scored twice for instances: boundary-aware (``mask_ap``, what ``predict`` returns) and by
connected components of its class map (``mask_ap_components``), side by side; ``evaluate_labels(labels,
truth)`` scores one labelled dataset (e.g. a ``grounded label`` run) against another, images matched by file
name. Both return one dict (see :mod:`grounded.distill.metrics` for the definitions)::

    {"images": 80, "miou": 0.61, "pixel_accuracy": 0.93, "background_iou": 0.95,
     "per_class_iou": {"wheel": 0.78, ...}, "mask_ap": 0.31, "mask_ap50": 0.55, "mask_ap75": 0.30,
     "per_class_ap": {"wheel": 0.52, ...}, "instances": "boundary",
     "mask_ap_components": 0.29, "mask_ap50_components": 0.52}

:func:`write_report` writes it as ``metrics.json`` and a readable ``metrics.txt`` table; with ``pairs=N`` the
first N images also get ``pairs/NAME.png``: image | ground truth | prediction, side by side.
Memory stays flat: per image only the confusion matrix is updated and RLE masks are kept for mask AP.
:func:`plot_history` draws a training run's losses and validation mIoU (``training_curve.png``).
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
from grounded.distill.metrics import MaskAP, confusion_matrix, semantic_scores
from grounded.errors import InputError
from grounded.formats.files import atomic_path, atomic_write_text
from grounded.utils.masks import rasterize_semantic

logger = logging.getLogger(__name__)

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
           progress: bool) -> dict[str, Any]:
    num_classes = len(class_names) + 1
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    ap, ap_components = MaskAP(class_names), MaskAP(class_names)
    for n, (name, image, truth_sem, truth, pred_sem, pred, pred_components) in enumerate(
        tqdm(items, total=total, desc="evaluate", disable=not progress, dynamic_ncols=True)
    ):
        if pred_sem.shape != truth_sem.shape:
            raise InputError(f"{name}: prediction {pred_sem.shape} and labels {truth_sem.shape} differ in size")
        confusion += confusion_matrix(pred_sem, truth_sem, num_classes)
        ap.add(truth, pred, truth_sem.shape)
        if pred_components is not None:
            ap_components.add(truth, pred_components, truth_sem.shape)
        if pairs_dir is not None and n < pairs:
            pairs_dir.mkdir(parents=True, exist_ok=True)
            save_pair(image, truth_sem, pred_sem, pairs_dir / f"{Path(name).stem}.png", num_classes)
    scores = semantic_scores(confusion, class_names)
    instance = ap.compute()
    result = {"images": total, **scores, "mask_ap": instance["ap"], "mask_ap50": instance["ap50"],
              "mask_ap75": instance["ap75"], "per_class_ap": instance["per_class_ap"]}
    if ap_components.images:
        components = ap_components.compute()
        result.update(mask_ap_components=components["ap"], mask_ap50_components=components["ap50"])
    return result


def evaluate_student(predictor, views, out: str | Path | None = None, pairs: int = 0, progress: bool = True) -> dict[str, Any]:  # noqa: ANN001
    """Score a student predictor on every item of ``views`` (a view or a list of them); writes ``out/pairs``
    when ``pairs`` > 0."""
    views = list(views) if isinstance(views, (list, tuple)) else [views]
    names = list(views[0].class_names)
    if list(predictor.class_names) != names or any(list(v.class_names) != names for v in views):
        raise InputError(f"student classes {predictor.class_names} differ from the dataset's {names}")
    boundary_aware = predictor.boundary_head and predictor.instances == "boundary"

    def items() -> Iterator[Item]:
        for view in views:
            for i in range(len(view)):
                image = view.image(i)
                probs, boundary = predictor.outputs(image)
                pred = predictor.detections(probs, boundary)
                components = probs_to_detections(probs, names, predictor.min_area) if boundary_aware else None
                yield (str(view.image_path(i)), image, view.semantic(i), view.detections(i),
                       probs.argmax(0).astype(np.uint8), pred, components)

    pairs_dir = Path(out) / "pairs" if out is not None and pairs else None
    result = _score(items(), names, sum(len(v) for v in views), pairs_dir, pairs, progress)
    result["instances"] = "boundary" if boundary_aware else "components"
    return result


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
    return _score(items(), names[0], len(matched), pairs_dir, pairs, progress)


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"


def format_table(result: dict[str, Any]) -> str:
    """The result as a fixed-width table (percentages): one row per class, then the summary."""
    names = list(result["per_class_iou"])
    width = max([len(n) for n in names] + [10])
    lines = [f"{'class':<{width}}   IoU %   AP %", "-" * (width + 17)]
    for name in names:
        lines.append(f"{name:<{width}}  {_fmt(result['per_class_iou'][name])}  {_fmt(result['per_class_ap'].get(name))}")
    lines += ["-" * (width + 17), f"{'background':<{width}}  {_fmt(result['background_iou'])}",
              f"mIoU {_fmt(result['miou'])}   pixel accuracy {_fmt(result['pixel_accuracy'])}   "
              f"mask AP {_fmt(result['mask_ap'])}   AP50 {_fmt(result['mask_ap50'])}   ({result['images']} images)"]
    if "mask_ap_components" in result:
        lines.append(f"instances: boundary-aware (above) | connected components: mask AP "
                     f"{_fmt(result['mask_ap_components'])}   AP50 {_fmt(result['mask_ap50_components'])}")
    return "\n".join(lines)


def plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    """Training and validation loss, and validation mIoU, against optimiser steps, as a PNG."""
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
    right.set_xlabel("step")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
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
