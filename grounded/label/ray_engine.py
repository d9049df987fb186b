"""The Ray engine: label on a Ray cluster with Ray Data, writing exactly what the in-process engine writes.

``grounded.label(..., engine="ray")`` / ``grounded label --engine ray``. Ray is an optional extra
(``pip install "grounded[ray]"``), imported only here. The plan:

- the images still to do (the run's list, already filtered by what is finished: resume works as in
  process) become a dataset of relative paths (``ray.data.from_items``);
- ``map_batches`` with a class-based UDF on a fixed pool of actors (``compute=ray.data.ActorPoolStrategy(
  size=workers)``, ``num_gpus=gpus_per_worker`` each, fractional ``num_cpus`` so the pool never starves
  Ray Data's other stages of CPUs). Each actor builds the predictor once from a picklable factory
  (:class:`grounded.label.engine.TeacherFactory`: the Predictor's keyword arguments), reads and decodes its
  images itself (a folder every worker sees at the same path: local, NFS, or a bucket mounted with
  s3fs / gcsfuse / mountpoint-s3), and labels a batch through the same :class:`~grounded.label.engine.Labeller`
  as the in-process engine: one fault boundary per image;
- rows come back as ``(image, record JSON text, soft-mask file bytes or None, model seconds)``: masks as RLE
  inside the text, never dense arrays (soft masks: uint8 at 256 px, compressed); ONE writer on the driver writes
  each soft file, then its record, atomically. A record already on disk with the same
  bytes is not rewritten, and each image is written once per run.

Faults: an actor that dies mid-batch (killed, OOM-killed, its node lost) is restarted and the batch
retried by Ray Data (its actor pools default to ``max_restarts=-1`` and ``max_task_retries=-1``; Ray 2.60
deprecates passing them to ``map_batches``); rows of a failed attempt are never emitted, so nothing is lost
or doubled. Python exceptions never kill a worker (the per-image fault boundary turns them into error
rows), so only an image that kills its process outright (a decoder crash) would be retried without end;
the decoded-pixel cap and the reduction to ``max_side`` keep images from exhausting memory. A driver killed
mid-run is resumed by running the same command again (either engine).

The run's manifest needs the predictor's ``describe()``; the driver asks one short-lived task on the
cluster for it (it builds the predictor once there), so the driver itself never loads the models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import GroundedError, InputError
from grounded.label.engine import Labeller
from grounded.label.modelview import MODEL_SIDE, MaxSide
from grounded.label.records import write_record_text
from grounded.label.soft import write_soft
from grounded.ontology import Ontology

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run (``grounded label --engine ray`` flags)."""

    address: str | None = None  # a running cluster ("auto", "ray://head:10001", ...); None: a local one
    workers: int = 1  # actors, each with its own predictor
    gpus_per_worker: float = 0.0  # e.g. 1 (0.5: two workers share a GPU)
    cpus_per_worker: float = 0.5  # fractional: whole CPUs per actor starve Ray Data's read stage on small machines


def require_ray() -> Any:
    """``import ray`` (with Ray Data), or an InputError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError('engine "ray" needs Ray Data, which is not installed: pip install "grounded[ray]"') from None
    return ray


@contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Connect to (or start) Ray; shut down only what this call started."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _describe(factory: Callable[[], Any], ontology: Ontology | None, soft_side: int | None) -> dict[str, Any]:
    instance = factory()
    if ontology is not None:  # what the models cannot do (ontology thresholds, soft masks) is refused here
        Labeller(instance, ontology, soft_side=soft_side)
    return instance.describe()


def describe_on_cluster(ray: Any, factory: Callable[[], Any], options: RayOptions, ontology: Ontology | None = None,
                        soft_side: int | None = None) -> dict[str, Any]:
    """The predictor's ``describe()``, computed on the cluster (the driver loads no model). With ``ontology``
    (labelling), a :class:`~grounded.label.engine.Labeller` is built there first, so what the models refuse
    (soft masks with a segmenter that gives none, ...) is raised before ``run.json`` is written, as in process."""
    task = ray.remote(_describe).options(num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker)
    try:
        return ray.get(task.remote(factory, ontology, soft_side))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, GroundedError):  # a refusal: its message, not the worker's traceback
            raise exc.cause from None
        raise


class LabelActor:
    """The Ray Data UDF: builds the predictor once per actor, labels a batch of relative paths."""

    def __init__(self, factory: Callable[[], Any], ontology: Ontology, root: str, max_side: MaxSide,
                 soft_side: int | None = None) -> None:
        self.labeller = Labeller(factory(), ontology, max_side, soft_side)
        self.root = root

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [self.labeller.prepare(self.root, str(rel)) for rel in batch["image"]]
        rows = self.labeller.label(items)
        return {
            "image": np.array([r[0] for r in rows], dtype=object),
            "record": np.array([r[1] for r in rows], dtype=object),
            "soft": np.array([r[2] for r in rows], dtype=object),
            "seconds": np.array([r[3] for r in rows], dtype=np.float64),
        }


def label_ray(out: Path, root: Path, todo: list[str], ray: Any, factory: Callable[[], Any], ontology: Ontology,
              options: RayOptions, *, batch_size: int = 1, max_side: MaxSide = MODEL_SIDE, progress: bool = False,
              on_done: Callable[[], None] = lambda: None, soft_side: int | None = None) -> float:
    """Label ``todo`` on the cluster; write every record on this (the driver's) side; return model seconds."""
    if not todo:
        return 0.0
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    dataset = ray.data.from_items([{"image": rel} for rel in todo])
    labelled = dataset.map_batches(
        LabelActor,
        fn_constructor_kwargs={"factory": factory, "ontology": ontology, "root": str(root), "max_side": max_side,
                               "soft_side": soft_side},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker,
    )
    written: set[str] = set()
    model_seconds = 0.0
    for row in labelled.iter_rows():
        relative = str(row["image"])
        if relative in written:  # a retried batch never emits twice; kept as a guard
            continue
        if row.get("soft") is not None:
            write_soft(out, relative, bytes(row["soft"]))  # first: a record on disk means its soft file is there
        write_record_text(out, relative, str(row["record"]))
        written.add(relative)
        model_seconds += float(row["seconds"])
        on_done()
    missing = set(todo) - written
    if missing:
        raise RuntimeError(f"the Ray engine returned no record for {len(missing)} images (e.g. {sorted(missing)[0]!r})")
    return model_seconds
