"""Labelling runs over MCP: ``label``, ``run_status``, ``review_queue``, ``export``, ``cancel``.

``label`` calls :func:`grounded.label` (the function ``grounded label`` calls) on a background job with the
server's one teacher (:class:`SharedTeacher`), and returns the run's id at once, or follows it to the end
with ``wait``. A run is its output folder: the same call again resumes it, as the command does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from grounded.errors import InputError
from grounded.mcp.jobs import Progress, follow
from grounded.mcp.schemas import (
    DoubtfulDetection,
    ExportResult,
    JobState,
    QueueItem,
    ReviewQueue,
    RunCounts,
    RunStatus,
)
from grounded.mcp.tools import Workspace, add_tool

ERRORS_SHOWN = 10


class SharedTeacher:
    """The server's teacher as :func:`grounded.label` sees it (``describe`` + ``segment_batch``).

    Each batch runs under the engine's lock, so ``segment`` calls slip in between batches; the job's
    cancellation is checked before each batch and its progress counted after it."""

    def __init__(self, engine: Any, progress: Progress) -> None:
        self.engine, self.progress = engine, progress

    def describe(self) -> dict[str, Any]:
        self.progress.check()
        with self.engine.use() as predictor:
            return predictor.describe()

    def segment_batch(self, images: list[Any], prompt: Any, **options: Any) -> list[Any]:
        self.progress.check()
        with self.engine.use() as predictor:
            found = predictor.segment_batch(images, prompt, **options)
        self.progress.advance(len(images))
        return found


def run_kind(folder: Path, job_kind: str | None) -> str:
    if (folder / "run.json").is_file():
        return "label"
    if (folder / "student.json").is_file() or (folder / "train_state.pt").is_file() or job_kind == "train":
        return "train"
    return job_kind or "unknown"


def label_counts(ws: Workspace, folder: Path) -> tuple[RunCounts, list[dict[str, str]]]:
    """What a label run's records hold (read through the review page's :class:`RunView`, cached by mtime)."""
    from grounded.serve.runs import RunView

    key = ("view", folder, (folder / "run.json").stat().st_mtime_ns)
    view = ws.cache.get(key) or ws.cache.setdefault(key, RunView(folder))
    entries = view.images()
    instances = dict.fromkeys(view.classes, 0)
    for entry in entries:
        for class_id in entry["class_ids"]:
            instances[view.classes[class_id]] += 1
    by = {s: sum(e["status"] == s for e in entries) for s in ("labelled", "error", "missing")}
    counts = RunCounts(images=len(entries), labelled=by["labelled"], errors=by["error"], missing=by["missing"],
                       empty=sum(e["status"] == "labelled" and not e["class_ids"] for e in entries),
                       reviewed=sum(e["reviewed"] for e in entries), instances=instances)
    errors = [{"file": e["file"], "reason": e["error"]} for e in entries if e["status"] == "error"]
    return counts, errors[:ERRORS_SHOWN]


def read_status(ws: Workspace, run: str) -> RunStatus:
    """The status of a run given by id or folder (see :class:`grounded.mcp.schemas.RunStatus`)."""
    folder = ws.folder(run)
    if not folder.is_dir():
        raise InputError(f"run {run!r} is not a folder")
    run = ws.runs.id_for(folder)
    job = ws.runs.job(folder)
    kind = run_kind(folder, job.kind if job is not None else None)
    counts, errors = label_counts(ws, folder) if (folder / "run.json").is_file() else (None, [])
    summary_file = folder / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else None
    return RunStatus(run=run, folder=str(folder), kind=kind, job=JobState(**job.snapshot()) if job else None,
                     counts=counts, errors=errors, summary=summary,
                     resources=[f"grounded://runs/{run}/summary", f"grounded://runs/{run}/preview"])


def register(server: MCPServer, ws: Workspace):  # noqa: ANN201  (returns the status function for resources)
    """Add the run tools to ``server``; return ``status(run) -> RunStatus`` (the resources use it)."""
    from grounded.label import label as label_run
    from grounded.label.export import check_formats
    from grounded.label.manifest import run_lock
    from grounded.label.records import image_relatives, record_path
    from grounded.label.runner import as_ontology
    from grounded.label.splits import parse_split

    async def label(
        images: Annotated[str, Field(description="folder of images (searched recursively), inside the allowed folders")],
        out: Annotated[str, Field(description="output folder of the run (created; the same call resumes it)")],
        ctx: Context,
        classes: Annotated[str | None, Field(description='class names, e.g. "car, wheel, dog"')] = None,
        ontology: Annotated[str | None, Field(description="instead of classes: an ontology name (see models) or a "
                                                          ".yaml path")] = None,
        formats: Annotated[list[str] | None, Field(description="exports: coco, yolo, yolo-seg, voc, masks, "
                                                               "label-studio (default coco, yolo)")] = None,
        split: Annotated[str, Field(description='train,val[,test] fractions, e.g. "0.7,0.2,0.1"')] = "0.8,0.2",
        seed: Annotated[int, Field(description="seed of the split and the preview sample")] = 0,
        force: Annotated[bool, Field(description="start over when out holds a run with other settings")] = False,
        retry_errors: Annotated[bool, Field(description="label again the images with an error row")] = False,
        batch_size: Annotated[int, Field(ge=1, description="images per model call")] = 1,
        preview: Annotated[int, Field(ge=0, description="images in the run's preview grid")] = 16,
        wait: Annotated[bool, Field(description="follow the run to its end (progress notifications; cancelling "
                                                "the call cancels the run) instead of returning at once")] = False,
    ) -> RunStatus:
        """Auto-label a folder of images into a dataset (COCO, YOLO, VOC, mask PNGs), as `grounded label`.

        Starts a run on a background job and returns its id at once: poll run_status, then review_queue and
        export. One bad image never ends a run (it gets an error row). Finished images stay on disk: the same
        call after a cancel or a crash resumes. One job per run at a time."""
        if (classes is None) == (ontology is None):
            raise InputError("give classes (e.g. \"car, wheel\") or an ontology, not both and not neither")
        wanted = ws.ontology(ontology) if ontology else as_ontology(classes)
        formats = check_formats(formats or ["coco", "yolo"])
        parse_split(split)
        root = ws.roots.resolve(images, "images")
        if not root.is_dir():
            raise InputError(f"images {images!r} is not a folder; give the folder of images to label")
        folder = ws.roots.resolve(out, "out", must_exist=False)
        ws.runs.check_idle(folder)
        with run_lock(folder):  # another process writing it: refused now, not later on the job
            pass

        def work(progress: Progress) -> dict[str, Any]:
            relatives = image_relatives(root, folder)
            progress.unit, progress.total, progress.message = "images", len(relatives), "labelling"
            progress.done = sum(record_path(folder, rel).is_file() for rel in relatives)
            summary = label_run(root, wanted, folder, predictor=SharedTeacher(ws.engine, progress), formats=formats,
                                split=split, seed=seed, force=force, retry_errors=retry_errors, preview=preview,
                                batch_size=batch_size, progress=False)
            progress.done, progress.message = summary.images, "done"
            return summary.to_dict()

        job = ws.runs.start(folder, "label", work)
        if wait:
            await follow(ctx, job)
        return read_status(ws, job.run or str(folder))

    def run_status(
        run: Annotated[str, Field(description="run id (from label / train) or the run's folder")],
    ) -> RunStatus:
        """A run's state: its job (running, done, failed, cancelled; progress; error), what its records hold
        (images labelled, empty, errors, not reached, reviewed; instances per class), its first error rows
        and its summary.json."""
        return read_status(ws, run)

    def review_queue(
        run: Annotated[str, Field(description="label run id or folder")],
        limit: Annotated[int, Field(ge=1, le=1000, description="at most this many images")] = 20,
        include_reviewed: Annotated[bool, Field(description="also images a person marked reviewed")] = False,
    ) -> ReviewQueue:
        """The images of a label run most needing a person, most doubtful first: detections scored just above
        their class's threshold, low scores, and CLIP disagreement where verification ran. Each item says
        which detections (by index in the record) and why. Corrections: the review page (grounded serve)."""
        from grounded.label.manifest import read_manifest
        from grounded.label.queue import run_review_queue, run_thresholds

        folder = ws.folder(run)
        manifest = read_manifest(folder)
        items = [QueueItem(file=q.file, doubt=q.doubt,
                           detections=[DoubtfulDetection(**vars(d)) for d in q.detections])
                 for q in run_review_queue(folder, limit, include_reviewed)]
        return ReviewQueue(run=ws.runs.id_for(folder), images_root=manifest["images_root"],
                           thresholds_known=run_thresholds(manifest) is not None, items=items)

    async def export(
        run: Annotated[str, Field(description="label run id or folder")],
        formats: Annotated[list[str], Field(description="coco, yolo, yolo-seg, voc, masks, label-studio")],
        ctx: Context,
        copy_images: Annotated[bool, Field(description="copy images into YOLO/VOC/mask folders (default: "
                                                       "links)")] = False,
    ) -> ExportResult:
        """Rebuild exports of a label run from its records (no model runs), as `grounded export`; a person's
        reviews are applied (rejected detections dropped, relabelled ones moved)."""
        from grounded.label import export_run

        folder = ws.folder(run)
        chosen = check_formats(formats)
        job = await follow(ctx, ws.runs.start(folder, "export",
                                              lambda progress: export_run(folder, chosen, copy_images=copy_images)))
        stats = job.outcome()
        return ExportResult(run=ws.runs.id_for(folder), folders={f: str(folder / f) for f in chosen},
                            images=stats.images, labelled=stats.labelled, empty=stats.empty, missing=stats.missing,
                            errors=len(stats.errors), instances=stats.instances, splits=stats.splits)

    def cancel(
        run: Annotated[str, Field(description="run id or folder")],
    ) -> RunStatus:
        """Cancel the job running on a run (label or train). It stops at its next batch or step; finished
        images and checkpoints stay, and the same label / train call resumes."""
        folder = ws.folder(run)
        job = ws.runs.job(folder)
        if job is None or not job.running:
            raise InputError(f"run {run!r} has no running job to cancel")
        job.cancel()
        return read_status(ws, run)

    add_tool(server, label, title="Auto-label a folder")
    add_tool(server, run_status, title="Run status", read_only=True)
    add_tool(server, review_queue, title="Review queue", read_only=True)
    add_tool(server, export, title="Export a label run")
    add_tool(server, cancel, title="Cancel a run's job")
    return lambda run: read_status(ws, run)
