"""``grounded.label``: auto-label a folder of images from class names; streamed, resumable, exported.

::

    import grounded
    summary = grounded.label("photos/", "prompts/car_parts.yaml", "out/", formats=["coco", "yolo"])
    print(summary.table())

Every entry named like an image below the folder (found recursively, sorted; :mod:`grounded.label.walk`)
ends as a record in ``OUT/records/``, written atomically as soon as it is done (see
:mod:`grounded.label.records`): its detections, or an error row saying why it has none (unreadable,
a dangling link, a folder, out of memory, ...: one bad file never ends a run, :mod:`grounded.label.engine`).
Images already finished are skipped, so re-running the same command after an interruption (Ctrl-C,
kill -9, power loss) completes the run and gives the same files as an uninterrupted one; error rows are
tried again only with ``retry_errors=True``. ``OUT/run.json`` refuses a changed images root, ontology or
model unless ``force=True`` (:mod:`grounded.label.manifest`); the run's lock is taken before any model
loads. Then the exports are rebuilt from the records (:mod:`grounded.label.export`), a preview grid is
drawn and ``OUT/summary.json`` written.

Engines: ``"local"`` (this process: ``batch_size`` images per model call, decoding ``prefetch`` batches
ahead on a background thread) or ``"ray"`` (a Ray cluster: :mod:`grounded.label.ray_engine`). Both write
the same bytes.

Soft masks (``soft_masks=True``, ``--soft-masks``; off by default, and then nothing of them is computed):
each labelled image also gets ``OUT/soft/<relative path>.npz``, SAM's mask probabilities before the threshold
at a bounded size, named in ``run.json`` for a student to learn from (:mod:`grounded.label.soft`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grounded.config import TileOptions
from grounded.errors import InputError
from grounded.formats.files import disk_full_guard
from grounded.label.engine import Given, Labeller, TeacherFactory, label_local
from grounded.label.export import check_formats, export_locked
from grounded.label.manifest import build_manifest, run_lock, start_run
from grounded.label.modelview import MODEL_SIDE, MaxSide, check_max_side
from grounded.label.preview import write_preview
from grounded.label.records import (
    RECORDS_DIR,
    RESUME_HINT,
    image_relatives,
    read_record,
    remove_stale_temporaries,
)
from grounded.label.reviews import review_counts
from grounded.label.soft import SOFT_DIR, SOFT_SIDE, manifest_entry, soft_path
from grounded.label.splits import parse_split
from grounded.label.summary import LabelSummary
from grounded.ontology import Ontology

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
    if isinstance(images, str) and "://" in images:
        raise InputError(f"images {images!r}: give a folder (for a bucket, mount it on every worker: s3fs, gcsfuse)")
    if isinstance(images, (str, Path)):
        root = Path(images)
        if root.is_file() or (root.is_symlink() and not root.is_dir()):
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


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class LabelConfig:
    """How a labelling run runs and what it writes: the settings of :func:`label` (the teacher's are
    :class:`grounded.config.ModelConfig` / :class:`~grounded.config.SegmentOptions`). ``grounded label``'s
    flags are generated from these fields (grounded/cli/label.py)."""

    formats: tuple[str, ...] = ("coco", "yolo")  # exports to build, from FORMATS (grounded.label.export)
    split: str | tuple[float, ...] = (0.8, 0.2)  # train/val(/test) fractions, or "0.7,0.2,0.1"; seeded by seed
    seed: int = 0  # seed of the split and of the preview's sample
    force: bool = False  # start over when out holds a run with another images root, ontology or model
    retry_errors: bool = False  # label again the images that have an error row (default: keep the rows)
    preview: int = 16  # images in OUT/preview.png (0: none)
    copy_images: bool = False  # copy images into the YOLO / VOC / mask folders instead of linking them
    progress: bool = True  # a progress bar (rate and ETA)
    batch_size: int = 1  # images per model call (records are still written one per image, same bytes)
    prefetch: int = 2  # batches decoded ahead on a background thread (local engine; 0: none)
    max_side: MaxSide = MODEL_SIDE  # large images reach the models reduced, results come back at the original
    #   size (grounded.label.modelview): "model" to what the predictor's models see of each image, an int to that
    #   long side, None: never reduce
    engine: str = "local"  # "local" (this process) or "ray" (Ray Data; pip install "grounded[ray]")
    ray_address: str | None = None  # the Ray cluster to join (None: start a local one)
    workers: int = 1  # Ray actors, each with its own models
    gpus_per_worker: float = 0.0  # GPUs per Ray actor, e.g. 1 or 0.5
    cpus_per_worker: float = 0.5  # CPUs reserved per Ray actor (whole CPUs can starve Ray Data's reads)
    tiling: TileOptions | None = None  # tiled inference for large images (grounded.pipeline.tiled): images are then
    #   decoded at full resolution (max_side ignored) and the settings join the model's identity in run.json
    soft_masks: bool = False  # also store SAM's mask probabilities (before the threshold) per image in OUT/soft/,
    #   long side SOFT_SIDE (256), uint8, for `grounded train --soft-weight` (grounded.label.soft); SAM family only

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(check_formats(list(self.formats))))
        parse_split(self.split)  # refused here, before any work
        check_max_side(self.max_side)
        if self.engine not in ENGINES:
            raise InputError(f"engine {self.engine!r}: choose 'local' (this process) or 'ray' (a Ray cluster)")
        for name in ("batch_size", "workers"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")


def label(
    images: str | Path | Sequence[str | Path],
    ontology: Ontology | str | Path | Sequence[str],
    out: str | Path,
    *,
    predictor: Any = None,
    config: LabelConfig | None = None,
    **kwargs: Any,
) -> LabelSummary:
    """Label ``images`` (a folder, searched recursively, or a list of files) with ``ontology`` into ``out``.

    Args:
        predictor: anything with ``set_image(image)``, ``segment(ontology) -> sv.Detections`` and
            ``describe() -> dict`` (``segment_batch(images, ontology)`` used when present), or a zero-argument
            callable that builds one (a class, a ``functools.partial``; picklable for ``engine="ray"``);
            default ``grounded.Predictor(**predictor options)``, built after the run's lock is taken.
        config: the run's settings (:class:`LabelConfig`: formats, split, seed, force, retry_errors, preview,
            copy_images, progress, batch_size, prefetch, max_side, engine and the Ray engine's ray_address,
            workers, gpus_per_worker, cpus_per_worker, tiling and soft_masks); default ``LabelConfig()``.
        kwargs: keywords named like :class:`LabelConfig`'s fields override ``config``
            (``formats=["coco", "yolo-seg"]``, ``split="0.7,0.2,0.1"``, ``batch_size=4``, ...); the others are
            the default predictor's (``detector=``, ``box_threshold=``, ...: :class:`grounded.config.ModelConfig`
            and :class:`~grounded.config.SegmentOptions`).

    Returns:
        A :class:`LabelSummary` (also written to ``OUT/summary.json``).
    """
    started = time.perf_counter()
    ontology = as_ontology(ontology)
    given = {f.name: kwargs.pop(f.name) for f in fields(LabelConfig) if f.name in kwargs}
    config = replace(config or LabelConfig(), **given)
    predictor_options = kwargs  # the rest: the default predictor's
    c = config  # the steps below read each setting by its name
    formats, split, seed, force, retry_errors, preview = c.formats, c.split, c.seed, c.force, c.retry_errors, c.preview
    copy_images, progress, batch_size, prefetch, max_side = c.copy_images, c.progress, c.batch_size, c.prefetch, c.max_side
    engine, ray_address, workers, gpus_per_worker, cpus_per_worker = (c.engine, c.ray_address, c.workers,
                                                                      c.gpus_per_worker, c.cpus_per_worker)
    formats = list(formats)
    soft_side = SOFT_SIDE if c.soft_masks else None
    fractions = parse_split(split)
    out = Path(out)
    root, relatives = _images_and_root(images, out)
    factory = _factory(predictor, predictor_options)
    if c.tiling is not None and c.tiling.enabled:
        from grounded.pipeline.tiled import TiledFactory

        factory, max_side = TiledFactory(factory, c.tiling), None  # the slices come from the full-resolution image
    if engine == "ray":
        from grounded.label import ray_engine

        ray_engine.require_ray()  # the error naming the extra comes before any work
    with run_lock(out), disk_full_guard(f"the run in {str(out)!r}", RESUME_HINT):
        if engine == "ray":
            options = ray_engine.RayOptions(ray_address, int(workers), float(gpus_per_worker), float(cpus_per_worker))
            with ray_engine.ray_session(options) as ray:
                model = ray_engine.describe_on_cluster(ray, factory, options, ontology, soft_side)
                todo, resumed = _start(out, root, relatives, ontology, model, fractions, seed, force, retry_errors,
                                       soft_side)
                with _progress(len(relatives), len(relatives) - len(todo), progress) as done:
                    model_seconds = ray_engine.label_ray(out, root, todo, ray, factory, ontology, options,
                                                         batch_size=batch_size, max_side=max_side, on_done=done,
                                                         soft_side=soft_side)
        else:
            instance = factory()
            # refuses what the models cannot do (soft masks included) before run.json is written
            labeller = Labeller(instance, ontology, max_side, soft_side)
            todo, resumed = _start(out, root, relatives, ontology, instance.describe(), fractions, seed, force,
                                   retry_errors, soft_side)
            with _progress(len(relatives), len(relatives) - len(todo), progress) as done:
                model_seconds = label_local(out, root, todo, labeller, batch_size=batch_size, prefetch=prefetch,
                                            on_done=done)
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
        dropped_empty_masks=stats.dropped_empty_masks,
        errors=stats.errors,
        instances=stats.instances,
        splits=stats.splits,
        exports={fmt: str(out / fmt) for fmt in formats},
        preview=str(preview_path) if preview_path else None,
        seconds=round(seconds, 3),
        model_seconds=round(model_seconds, 3),
        images_per_second=round(processed / seconds, 3) if processed and seconds > 0 else 0.0,
        extra={"engine": engine, "batch_size": int(batch_size), **({"workers": int(workers)} if engine == "ray" else {}),
               "reviews": review_counts(out)},  # a person's corrections (grounded/label/reviews.py)
    )
    summary.save(out)
    logger.info("labelled %s\n%s", out, summary.table())
    return summary


def _factory(predictor: Any, predictor_options: dict[str, Any]) -> Callable[[], Any]:
    """A zero-argument callable building the predictor (only called once the run's lock is held)."""
    if predictor is None:
        return TeacherFactory(dict(predictor_options))
    if predictor_options:
        raise InputError(f"options {sorted(predictor_options)} apply to the default predictor only; set them on yours")
    if isinstance(predictor, type) or (callable(predictor) and not hasattr(predictor, "describe")):
        return predictor
    return Given(predictor)


def _start(out: Path, root: Path, relatives: list[str], ontology: Ontology, model: dict[str, Any],
           fractions: dict[str, float], seed: int, force: bool, retry_errors: bool,
           soft_side: int | None = None) -> tuple[list[str], int]:
    """Check or write ``run.json``; return (images to label, images labelled by earlier runs). With soft masks
    on, an image labelled without its soft file (by a run with them off) is labelled again."""
    soft = manifest_entry() if soft_side is not None else None
    start_run(out, build_manifest(root, ontology, model, fractions, seed, soft), force=force)
    if remove_stale_temporaries(out, (RECORDS_DIR, SOFT_DIR)):
        logger.info("removed temporary files of an interrupted run")
    todo, resumed = [], 0
    for rel in relatives:
        record = read_record(out, rel)
        if (record is None or (retry_errors and "error" in record)
                or (soft is not None and "error" not in record and not soft_path(out, rel).is_file())):
            todo.append(rel)
        elif "error" not in record:
            resumed += 1
    if len(relatives) > len(todo):
        logger.info("resuming: %d of %d images already done (%d labelled)", len(relatives) - len(todo),
                    len(relatives), resumed)
    return todo, resumed


@contextmanager
def _progress(total: int, initial: int, enabled: bool) -> Iterator[Callable[[], None]]:
    bar = tqdm(total=total, initial=initial, desc="label", unit="img", disable=not enabled, smoothing=0.1)
    try:
        yield lambda: bar.update(1)
    finally:
        bar.close()
