"""``grounded.label``: auto-label a folder of images from class names; streamed, resumable, exported.

::

    import grounded
    summary = grounded.label("photos/", "prompts/car_parts.yaml", "out/", formats=["coco", "yolo"])
    print(summary.table())

For each image (found recursively, sorted): read it, run the predictor once with the whole ontology,
and write its record to ``OUT/records/`` atomically (see :mod:`grounded.label.records`). Images already
finished are skipped, so re-running the same command after an interruption (Ctrl-C, kill -9, power loss)
completes the run and gives the same files as an uninterrupted one; ``OUT/run.json`` refuses a changed
images root, ontology or model unless ``force=True`` (:mod:`grounded.label.manifest`). An image that cannot
be read is recorded with the reason (``OUT/errors.json``) and skipped. Then the exports are rebuilt from
the records (:mod:`grounded.label.export`), a preview grid is drawn and ``OUT/summary.json`` written.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grounded.errors import InputError
from grounded.label.export import check_formats, export_locked
from grounded.label.manifest import build_manifest, run_lock, start_run
from grounded.label.preview import write_preview
from grounded.label.records import (
    detections_to_record,
    image_relatives,
    read_record,
    remove_stale_temporaries,
    write_record,
)
from grounded.label.reviews import review_counts
from grounded.label.splits import parse_split
from grounded.label.summary import LabelSummary
from grounded.ontology import Ontology
from grounded.utils.images import load_image

logger = logging.getLogger(__name__)


def as_ontology(ontology: Ontology | str | Path | Sequence[str]) -> Ontology:
    """An Ontology, a YAML path (``.yaml`` / ``.yml``), ``"car, wheel"`` or a list of class names."""
    if isinstance(ontology, Ontology):
        return ontology
    if isinstance(ontology, Path) or (isinstance(ontology, str) and ontology.lower().endswith((".yaml", ".yml"))):
        return Ontology.from_yaml(ontology)
    return Ontology.from_classes(ontology)


def _images_and_root(images: str | Path | Sequence[str | Path], out: Path) -> tuple[Path, list[str]]:
    """(absolute images root, image paths relative to it as POSIX strings, sorted)."""
    if isinstance(images, (str, Path)):
        root = Path(images)
        if root.is_file():
            return Path(os.path.abspath(root.parent)), [root.name]
        if not root.is_dir():
            raise InputError(f"image folder {str(root)!r} not found or not a folder")
        relatives = image_relatives(root, out)
        if not relatives:
            raise InputError(f"no images found below {str(root)!r} (looked for jpg, jpeg, png, bmp, tif, tiff, webp)")
        return Path(os.path.abspath(root)), relatives
    paths = sorted({Path(os.path.abspath(p)) for p in images})
    if not paths:
        raise InputError("no images given: pass a folder or a list of image paths")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    return root, [p.relative_to(root).as_posix() for p in paths]


def label(
    images: str | Path | Sequence[str | Path],
    ontology: Ontology | str | Path | Sequence[str],
    out: str | Path,
    *,
    predictor: Any = None,
    formats: Sequence[str] = ("coco", "yolo"),
    split: str | Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    force: bool = False,
    preview: int = 16,
    copy_images: bool = False,
    progress: bool = True,
    **predictor_options: Any,
) -> LabelSummary:
    """Label ``images`` (a folder, searched recursively, or a list of files) with ``ontology`` into ``out``.

    Args:
        predictor: anything with ``set_image(image)``, ``segment(ontology) -> sv.Detections`` and
            ``describe() -> dict``; default ``grounded.Predictor(**predictor_options)``.
        formats: exports to build, from ``coco``, ``yolo``, ``yolo-seg``, ``voc``, ``masks``.
        split: train/val(/test) fractions, e.g. ``(0.8, 0.2)`` or ``"0.7,0.2,0.1"``; seeded by ``seed``.
        force: start over when ``out`` holds a run with another images root, ontology or model.
        preview: number of images in ``OUT/preview.png`` (0: none).
        copy_images: copy images into the YOLO / VOC / mask folders instead of linking them.
        progress: show a progress bar (rate and ETA).

    Returns:
        A :class:`LabelSummary` (also written to ``OUT/summary.json``).
    """
    started = time.perf_counter()
    ontology = as_ontology(ontology)
    formats = check_formats(list(formats))
    fractions = parse_split(split)
    out = Path(out)
    root, relatives = _images_and_root(images, out)
    if predictor is None:
        from grounded.pipeline.predictor import Predictor

        predictor = Predictor(**predictor_options)
    elif predictor_options:
        raise InputError(f"options {sorted(predictor_options)} apply to the default predictor only; set them on yours")

    manifest = build_manifest(root, ontology, predictor.describe(), fractions, seed)
    with run_lock(out):
        start_run(out, manifest, force=force)
        model_seconds, todo, resumed = _label_images(out, root, relatives, ontology, predictor, progress)
        stats = export_locked(out, formats, copy_images, progress=False)
        preview_path = write_preview(out, root, relatives, count=preview, seed=seed) if preview > 0 else None
    seconds = time.perf_counter() - started
    retried = set(todo)
    processed = len(todo) - sum(1 for e in stats.errors if e["file"] in retried)
    summary = LabelSummary(
        out=str(out),
        images=stats.images,
        labelled=stats.labelled,
        processed=processed,
        resumed=resumed,
        empty=stats.empty,
        errors=stats.errors,
        instances=stats.instances,
        splits=stats.splits,
        exports={fmt: str(out / fmt) for fmt in formats},
        preview=str(preview_path) if preview_path else None,
        seconds=round(seconds, 3),
        model_seconds=round(model_seconds, 3),
        images_per_second=round(processed / seconds, 3) if processed and seconds > 0 else 0.0,
        extra={"reviews": review_counts(out)},  # a person's corrections (grounded/label/reviews.py)
    )
    summary.save(out)
    logger.info("labelled %s\n%s", out, summary.table())
    return summary


def _label_images(out: Path, root: Path, relatives: list[str], ontology: Ontology, predictor: Any,
                  progress: bool) -> tuple[float, list[str], int]:
    """Label every image without a finished record; return (seconds in the predictor, images tried, skipped)."""
    if remove_stale_temporaries(out):
        logger.info("removed temporary files of an interrupted run")
    todo = [rel for rel in relatives if (rec := read_record(out, rel)) is None or "error" in rec]
    resumed = len(relatives) - len(todo)
    if resumed:
        logger.info("resuming: %d of %d images already labelled", resumed, len(relatives))

    model_seconds = 0.0
    bar = tqdm(total=len(relatives), initial=resumed, desc="label", unit="img", disable=not progress, smoothing=0.1)
    try:
        for rel in todo:
            try:
                image = load_image(root / rel, name=rel)
            except InputError as exc:
                logger.warning("skipping %s: %s", rel, exc)
                write_record(out, {"file": rel, "error": str(exc)})
                bar.update(1)
                continue
            tick = time.perf_counter()
            predictor.set_image(image)
            detections = predictor.segment(ontology)
            model_seconds += time.perf_counter() - tick
            write_record(out, detections_to_record(rel, image.shape[0], image.shape[1], detections))
            del image, detections
            bar.update(1)
    finally:
        bar.close()
    return model_seconds, todo, resumed
