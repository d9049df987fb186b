"""The typed outputs of the MCP tools (their ``outputSchema``), as pydantic models.

Detections follow the one JSON schema of :mod:`grounded.io.detections_json` (what ``grounded segment``
writes): boxes XYXY in pixels of the image as displayed (EXIF orientation applied), masks as COCO compressed
RLE. A tool returns one of these models; the server sends it as structured content plus a JSON text block,
and any PNGs attached with :meth:`ToolOutput.attach` as image content after it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr


class ToolOutput(BaseModel):
    """Base of every tool output: PNG attachments and an optional text in place of the JSON text block."""

    _images: list[bytes] = PrivateAttr(default_factory=list)
    _text: str | None = PrivateAttr(default=None)

    def attach(self, png: bytes) -> ToolOutput:
        self._images.append(png)
        return self

    def with_text(self, text: str) -> ToolOutput:
        self._text = text
        return self


class Mask(BaseModel):
    size: list[int] = Field(description="[height, width] of the image")
    counts: str = Field(description="COCO compressed RLE (pycocotools' string form)")


class Detection(BaseModel):
    """One instance; further per-detection columns (e.g. CLIP verification's ``verify``, ``clip_prob``,
    ``class_name_detector``) appear under their own keys."""

    model_config = ConfigDict(extra="allow")
    bbox_xyxy: list[float] = Field(description="box [x1, y1, x2, y2] in pixels of the displayed image")
    class_id: int | None = Field(description="index of the class in the prompt's ontology")
    class_name: str | None = None
    phrase: str | None = Field(None, description="the prompt phrase that found it (a synonym of its class)")
    confidence: float | None = Field(None, description="detector score in [0, 1]")
    mask_score: float | None = Field(None, description="segmenter's predicted IoU of the mask")
    area: int | None = Field(None, description="mask pixels")
    mask: Mask | None = None


class SegmentResult(ToolOutput):
    """The JSON ``grounded segment`` writes for one image, plus how the call ran."""

    schema_version: int = Field(alias="schema", description="detections JSON schema version")
    image: str = Field(description="the image's path")
    width: int
    height: int
    detections: list[Detection]
    classes: list[str] = Field(description="the prompt's classes, in class_id order")
    seconds: float = Field(description="time in the models")
    reused_image_encoding: bool = Field(description="the image encoders were skipped (same image as last call)")
    files: list[str] = Field(default_factory=list, description="PNG + JSON written when `out` was given")


class JobState(BaseModel):
    kind: str = Field(description="label or train")
    state: str = Field(description="running, done, failed or cancelled")
    done: int
    total: int | None
    unit: str
    message: str
    error: str | None = Field(description="one line, when the job failed")
    started: float = Field(description="Unix time")
    seconds: float
    cancel_requested: bool


class RunCounts(BaseModel):
    images: int = Field(description="images found below the images root")
    labelled: int = Field(description="with a finished record (negatives included)")
    empty: int = Field(description="labelled, no detection")
    errors: int = Field(description="images with an error row (unreadable, ...)")
    missing: int = Field(description="not reached yet")
    reviewed: int = Field(description="marked reviewed by a person")
    instances: dict[str, int] = Field(description="detections per class")


class RunStatus(ToolOutput):
    """A run (an output folder) by its id: the job this server runs on it, and what the folder holds."""

    run: str = Field(description="the run's id: pass it to the other tools and in grounded://runs/{run}/...")
    folder: str
    kind: str = Field(description="label (a grounded label run), train (a student's run) or unknown")
    job: JobState | None = Field(description="the last job this server ran on it (None: none)")
    counts: RunCounts | None = Field(None, description="label runs: what the records hold")
    errors: list[dict[str, str]] = Field(default_factory=list, description="first error rows: file, reason")
    summary: dict[str, Any] | None = Field(None, description="the run's summary.json, when written")
    resources: list[str] = Field(default_factory=list, description="resource URIs of this run")


class DoubtfulDetection(BaseModel):
    index: int = Field(description="index in the record's detections")
    class_name: str
    confidence: float | None
    doubt: float = Field(description="0 (sure) .. 1 (most doubtful)")
    reasons: list[str]


class QueueItem(BaseModel):
    file: str = Field(description="image path relative to the images root")
    doubt: float = Field(description="the image's most doubtful detection's doubt")
    detections: list[DoubtfulDetection]


class ReviewQueue(ToolOutput):
    run: str
    images_root: str
    thresholds_known: bool = Field(description="whether the run recorded the thresholds (near-threshold signal)")
    items: list[QueueItem] = Field(description="most doubtful first")


class ExportResult(ToolOutput):
    run: str
    folders: dict[str, str] = Field(description="format -> folder written")
    images: int
    labelled: int
    empty: int
    missing: int
    errors: int
    instances: dict[str, int]
    splits: dict[str, int]


class EvaluateResult(ToolOutput):
    report: str = Field(description="folder of metrics.json and metrics.txt")
    table: str = Field(description="per-class IoU, mIoU, pixel accuracy, mask AP (the CLI's table)")
    metrics: dict[str, Any]


class PredictedImage(BaseModel):
    image: str
    instances: int
    per_class: dict[str, int]
    png: str
    json_path: str = Field(alias="json")


class PredictResult(ToolOutput):
    model: str
    out: str
    images: list[PredictedImage]


class BackendInfo(BaseModel):
    role: str = Field(description="detector, segmenter or model (a concept segmenter)")
    name: str
    backend: str
    model_type: str | None
    refuses: dict[str, str] = Field(description="option -> why this backend cannot honour it")
    honours: list[str] = Field(description="segment options this backend honours")


class ModelsResult(ToolOutput):
    loaded: bool = Field(description="whether the teacher is loaded (it loads once, on first use)")
    models: dict[str, Any] = Field(description="the teacher's identity (names, dtype, options) or its settings")
    backends: list[BackendInfo] = Field(description="per loaded backend (empty until loaded)")
    ontologies: dict[str, list[str]] = Field(description="ontology name -> classes (prompts folder)")
    roots: list[str] = Field(description="the folders this server may read and write")
    runs: list[dict[str, Any]] = Field(description="runs this server knows: id, folder, last job")
