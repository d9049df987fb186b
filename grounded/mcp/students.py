"""Students over MCP: ``train``, ``evaluate``, ``predict`` (the functions ``grounded train / evaluate /
predict`` call: :func:`grounded.distill.workflow.train_run`, :func:`~grounded.distill.workflow.evaluate_run`,
:class:`grounded.distill.predictor.StudentPredictor`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from grounded.distill.config import ARCHS
from grounded.mcp.jobs import Progress, follow, run_and_follow
from grounded.mcp.runs import read_status
from grounded.mcp.schemas import EvaluateResult, PredictedImage, PredictResult, RunStatus
from grounded.mcp.tools import Workspace, add_tool, picture


def _student(ws: Workspace, path: Path, device: str, min_area: int) -> Any:
    """A loaded student, kept while its file is unchanged (loaded once per model)."""
    from grounded.distill.predictor import StudentPredictor

    weights = path / "student.safetensors" if path.is_dir() else path
    stamp = weights.stat().st_mtime_ns if weights.exists() else 0
    key = ("student", path, stamp, device)
    if key not in ws.cache:
        ws.cache[key] = StudentPredictor.load(path, device=device)
    predictor = ws.cache[key]
    predictor.min_area = min_area
    return predictor


def register(server: MCPServer, ws: Workspace) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to ``server``."""

    async def train(
        dataset: Annotated[str, Field(description="label run id or folder, COCO json/folder, YOLO-seg folder, "
                                                  "or images/ + masks/")],
        out: Annotated[str, Field(description="run folder (created; an unfinished run there resumes)")],
        ctx: Context,
        arch: Annotated[str, Field(description=f"student network, one of {', '.join(ARCHS)} (fast: FastSeg, "
                                               "real-time, from scratch)")] = "fast",
        size: Annotated[str | None, Field(description="fast / unet: tiny, small (default), base; segformer "
                                                      "without pretrained weights: b0..b5")] = None,
        pretrained: Annotated[str | None, Field(description="transformers students: name or local folder")] = None,
        budget: Annotated[str | None, Field(description="fit the run to this wall time: 90s, 30m, 2h (default "
                                                        "30m when no epochs / max_steps)")] = None,
        epochs: Annotated[int | None, Field(ge=1)] = None,
        max_steps: Annotated[int | None, Field(ge=1)] = None,
        image_size: Annotated[int, Field(ge=32, description="training side in pixels")] = 320,
        batch_size: Annotated[int, Field(ge=1)] = 8,
        seed: int = 0,
        evaluate: Annotated[bool, Field(description="also evaluate on the validation split (RUN/eval/)")] = False,
        export: Annotated[bool, Field(description="export student.onnx at the end")] = True,
        wait: Annotated[bool, Field(description="follow training to its end (progress in steps; cancelling the "
                                                "call cancels it) instead of returning at once")] = False,
    ) -> RunStatus:
        """Train a small student on a labelled dataset, as `grounded train` (planned to fit a time budget,
        best checkpoint by validation mIoU, ONNX export). Starts a background job and returns the run's id
        at once (poll run_status: progress in steps, then summary). Cancel stops at the next step; the same
        call resumes from the last checkpoint."""
        from grounded.distill.budget import parse_budget
        from grounded.distill.config import StudentConfig, TrainConfig
        from grounded.distill.workflow import default_lr, train_run

        source = ws.folder(dataset, "dataset")
        folder = ws.roots.resolve(out, "out", must_exist=False)
        student = StudentConfig(arch=arch, **({"size": size} if size else {}), pretrained=pretrained)
        config = TrainConfig(image_size=image_size, budget_minutes=parse_budget(budget) if budget else None,
                             epochs=epochs, batch_size=batch_size, lr=default_lr(student), seed=seed,
                             max_steps=max_steps)

        def work(progress: Progress) -> dict[str, Any]:
            progress.unit, progress.message = "steps", "training"

            def on_step(step: int, total: int | None) -> None:
                progress.done, progress.total = step, total
                progress.check()

            summary = train_run(source, folder, student, config, export=export, evaluate=evaluate, progress=False,
                                on_step=on_step)
            progress.message = "done"
            return summary

        job = ws.runs.start(folder, "train", work)
        if wait:
            await follow(ctx, job)
        return read_status(ws, job.run or str(folder))

    async def evaluate(
        run: Annotated[str, Field(description="training run id or folder, student .safetensors / .onnx, or a "
                                              "label run (with data: its labels against ground truth)")],
        ctx: Context,
        data: Annotated[str | None, Field(description="dataset to score on, all of it (default: the run's own "
                                                      "validation split)")] = None,
        split: Annotated[Literal["all", "val", "test", "train"] | None, Field(
            description="which part of it (test: the held-out split nothing chose with)")] = None,
        out: Annotated[str | None, Field(description="report folder (default RUN/eval)")] = None,
        pairs: Annotated[int, Field(ge=0, description="write this many image | truth | prediction PNGs")] = 0,
    ) -> EvaluateResult:
        """Score a student (or a label run's labels) against ground truth, as `grounded evaluate`: per-class
        IoU, mIoU, pixel accuracy and mask AP (pycocotools); writes metrics.json and metrics.txt."""
        from grounded.distill.evaluate import format_table
        from grounded.distill.workflow import evaluate_run

        target = ws.folder(run)
        truth = ws.roots.resolve(data, "data") if data else None
        report = ws.roots.resolve(out, "out", must_exist=False) if out else None
        metrics, where = await run_and_follow(
            ctx, "evaluate", lambda progress: evaluate_run(target, truth, split, report, pairs, progress=False))
        return EvaluateResult(report=str(where), table=format_table(metrics),
                              metrics=json.loads(json.dumps(metrics, default=float)))

    async def predict(
        model: Annotated[str, Field(description="training run id or folder, student.safetensors or student.onnx")],
        images: Annotated[list[str], Field(min_length=1, description="image files")],
        out: Annotated[str, Field(description="folder for <image>.png and <image>.json (as `grounded predict`)")],
        ctx: Context,
        min_area: Annotated[int, Field(ge=0, description="drop instances smaller than this many pixels")] = 16,
        instances: Annotated[Literal["boundary", "components"], Field(
            description="split touching objects with the boundary head, or connected components")] = "boundary",
        show: Annotated[int, Field(ge=0, le=8, description="attach this many annotated pictures")] = 1,
    ) -> PredictResult:
        """Segment images with a trained student (torch or ONNX), as `grounded predict`: per image a PNG and
        the JSON of `grounded segment`; the first `show` pictures are attached. Progress per image; a
        cancelled call stops at the next image."""
        from grounded.formats.files import output_stems
        from grounded.io.detections_json import detections_to_json, write_json
        from grounded.utils.images import load_image

        weights = ws.folder(model, "model")
        paths = [ws.roots.resolve(p, "image") for p in images]
        folder = ws.roots.resolve(out, "out", must_exist=False)

        def work(progress: Progress) -> tuple[list[PredictedImage], list[bytes]]:
            progress.unit, progress.total = "images", len(paths)
            student = _student(ws, weights, "auto", min_area)
            folder.mkdir(parents=True, exist_ok=True)
            done, pictures = [], []
            for path, stem in zip(paths, output_stems(paths), strict=True):
                progress.check()
                pixels = load_image(path)
                found = student.predict(pixels, instances)
                (folder / f"{stem}.png").write_bytes(picture(pixels, found, side=None))
                write_json(detections_to_json(found, pixels.shape[:2], str(path)), folder / f"{stem}.json")
                names = [str(n) for n in found.data.get("class_name", [])]
                done.append(PredictedImage.model_validate(
                    {"image": str(path), "instances": len(found), "per_class": {n: names.count(n) for n in sorted(set(names))},
                     "png": str(folder / f"{stem}.png"), "json": str(folder / f"{stem}.json")}))
                if len(pictures) < show:
                    pictures.append(picture(pixels, found))
                progress.advance()
            return done, pictures

        done, pictures = await run_and_follow(ctx, "predict", work)
        result = PredictResult(model=str(weights), out=str(folder), images=done)
        for png in pictures:
            result.attach(png)
        return result

    add_tool(server, train, title="Train a student")
    add_tool(server, evaluate, title="Evaluate a student")
    add_tool(server, predict, title="Predict with a student")
