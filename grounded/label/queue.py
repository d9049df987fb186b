"""The review queue: which images of a labelling run most need a person, most doubtful first.

One ordering, used by every front end (the MCP server's ``review_queue`` tool, ``grounded review-queue RUN`` and
the review page's queue). :func:`review_queue` is a pure function over records (:mod:`grounded.label.records`);
:func:`run_review_queue` reads a run folder and calls it.

A detection is doubtful for any of these reasons, each scored in [0, 1]:

- **near the threshold**: its score lies less than ``band`` above the box threshold its class was found
  with (the run's options and ontology): 1 at the threshold, 0 at ``band`` above it;
- **low score**: its score is below ``low_score`` (``1 - score / low_score``); the one signal left when the
  thresholds are unknown (a predictor that does not record its options);
- **CLIP disagreement**, where verification ran (``verify="clip"``): CLIP ``corrected`` the detector's label
  (``clip_corrected``) or was ``uncertain`` (``clip_uncertain``); ``confirmed`` detections add nothing.

And per image, once a student was trained on the run: **student / teacher disagreement**, ``1 - IoU`` of
their masks (:func:`class_mask_iou`: per class, the union of each side's masks; the mean over the classes
either side found) when the IoU is below ``agreement``. ``grounded review-queue RUN --student S`` runs the
student over the run's images and keeps the IoUs in ``OUT/student_disagreement.json``
(:func:`write_disagreement`), which every front end then reads. An image the teacher found nothing in but
the student did is queued this way (a missed object).

An image's doubt is its most doubtful signal's; ties go to the image with more doubtful detections, then
to the path. Images with an error row (nothing to review), marked reviewed by a person (a review made on the
current record), or with no doubtful signal are left out.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from grounded.formats.files import atomic_write_text
from grounded.label.manifest import read_manifest
from grounded.label.records import image_relatives, read_record
from grounded.label.reviews import is_stale, read_review


@dataclass(frozen=True)
class QueueSettings:
    """How doubt is scored (untuned starting points, like CLIP verification's margins)."""

    band: float = 0.1  # a score less than this above its class's threshold is "near the threshold"
    low_score: float = 0.5  # a score below this is "low"
    clip_corrected: float = 1.0  # doubt when CLIP changed the detector's label
    clip_uncertain: float = 0.75  # doubt when CLIP could not decide
    agreement: float = 0.9  # student / teacher mask IoU below this is a disagreement (doubt 1 - IoU)

DISAGREEMENT_FILE = "student_disagreement.json"


@dataclass
class DoubtfulDetection:
    """One detection of a queued image: its index in the record's ``detections``, its doubt and why."""

    index: int
    class_name: str
    confidence: float | None
    doubt: float
    reasons: list[str]


@dataclass
class QueueItem:
    """One image of the queue: ``file`` relative to the images root, its doubt in [0, 1] and its doubtful
    detections, most doubtful first."""

    file: str
    doubt: float
    detections: list[DoubtfulDetection] = field(default_factory=list)
    image_reasons: list[str] = field(default_factory=list)  # whole-image signals (student / teacher disagreement)

    @property
    def reasons(self) -> list[str]:
        return self.image_reasons + [reason for d in self.detections for reason in d.reasons]


def detection_doubt(item: dict[str, Any], threshold: float | None,
                    settings: QueueSettings = QueueSettings()) -> tuple[float, list[str]]:
    """(doubt in [0, 1], reasons, strongest first) of one record detection found at box ``threshold``."""
    signals: list[tuple[float, str]] = []
    confidence = item.get("confidence")
    name = item.get("class_name") or str(item.get("class_id"))
    if confidence is not None:
        if threshold is not None and confidence - threshold < settings.band:
            margin = max(0.0, confidence - threshold)
            signals.append((1.0 - margin / settings.band,
                            f"{name} {confidence:.2f} is {margin:.2f} above its threshold {threshold:.2f}"))
        if confidence < settings.low_score:
            signals.append((1.0 - confidence / settings.low_score, f"{name} has a low score ({confidence:.2f})"))
    status = item.get("verify")
    if status == "corrected":
        was = item.get("class_name_detector", "?")
        signals.append((settings.clip_corrected, f"CLIP relabelled {was} as {name}"))
    elif status == "uncertain":
        signals.append((settings.clip_uncertain, f"CLIP is uncertain about {name}"))
    signals.sort(key=lambda s: -s[0])
    return (round(signals[0][0], 4) if signals else 0.0), [reason for _, reason in signals]


def review_queue(
    records: Iterable[dict[str, Any]],
    thresholds: Sequence[float] | None = None,
    reviewed: Collection[str] = (),
    limit: int | None = None,
    settings: QueueSettings = QueueSettings(),
    agreement: Mapping[str, float] | None = None,
) -> list[QueueItem]:
    """The images of ``records`` that most need a person, most doubtful first (see the module docstring).

    Args:
        records: label records (current schema: ``image``, ``detections`` or ``error``).
        thresholds: the box threshold of each class id, or None when unknown (then only scores and CLIP count).
        reviewed: images (record ``image`` paths) a person has already reviewed; left out.
        limit: at most this many images (None: all doubtful ones).
        agreement: image -> student / teacher mask IoU (:func:`read_disagreement`), or None without a student.
    """
    queue = []
    for record in records:
        if "error" in record or record["image"] in reviewed:
            continue
        whole: list[str] = []
        image_doubt = 0.0
        iou = (agreement or {}).get(record["image"])
        if iou is not None and iou < settings.agreement:
            image_doubt = round(1.0 - float(iou), 4)
            whole.append(f"student and teacher disagree (mask IoU {iou:.2f})")
        doubtful = []
        for index, item in enumerate(record.get("detections", [])):
            class_id = item.get("class_id")
            known = thresholds is not None and isinstance(class_id, int) and 0 <= class_id < len(thresholds)
            doubt, reasons = detection_doubt(item, float(thresholds[class_id]) if known else None, settings)
            if doubt > 0:
                doubtful.append(DoubtfulDetection(index, item.get("class_name") or "", item.get("confidence"),
                                                  doubt, reasons))
        if doubtful or whole:
            doubtful.sort(key=lambda d: (-d.doubt, d.index))
            queue.append(QueueItem(record["image"], max([image_doubt] + [d.doubt for d in doubtful]), doubtful, whole))
    queue.sort(key=lambda q: (-q.doubt, -len(q.detections), q.file))
    return queue if limit is None else queue[: max(0, int(limit))]


def run_thresholds(manifest: dict[str, Any]) -> list[float] | None:
    """Each class's box threshold in a run, from ``run.json`` (the predictor's options and the ontology);
    None when the predictor recorded no options."""
    from grounded.config import SegmentOptions
    from grounded.models.detections import class_thresholds
    from grounded.ontology import Ontology

    options = manifest.get("model", {}).get("options")
    if not isinstance(options, dict):
        return None
    known = {f.name for f in fields(SegmentOptions)}
    ontology = Ontology.from_dict(manifest["ontology"])
    box, _ = class_thresholds(ontology, SegmentOptions(**{k: v for k, v in options.items() if k in known}))
    return [float(t) for t in box]


def run_review_queue(out: str | Path, limit: int | None = 20, include_reviewed: bool = False,
                     settings: QueueSettings = QueueSettings()) -> list[QueueItem]:
    """:func:`review_queue` over the labelling run in ``out`` (records read one at a time); images a person
    marked reviewed are left out unless ``include_reviewed``."""
    out = Path(out)
    manifest = read_manifest(out)
    relatives = image_relatives(Path(manifest["images_root"]), out)
    return review_queue(_records(out, relatives, include_reviewed), run_thresholds(manifest), (), limit, settings,
                        read_disagreement(out))


def class_mask_iou(teacher: sv.Detections, student: sv.Detections) -> float:
    """Agreement of two detections of one image (masks (N, H, W)): per class id, the IoU of the union of each
    side's masks; the mean over the classes either side found (1.0 when neither found anything)."""
    classes = sorted(set(np.asarray(teacher.class_id).tolist()) | set(np.asarray(student.class_id).tolist()))
    if not classes:
        return 1.0
    ious = []
    for class_id in classes:
        a, b = (np.any(d.mask[d.class_id == class_id], axis=0) if (d.class_id == class_id).any() else None
                for d in (teacher, student))
        if a is None or b is None:
            ious.append(0.0)
            continue
        union = np.logical_or(a, b).sum()
        ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    return float(np.mean(ious))


def write_disagreement(out: str | Path, student: str, agreement: Mapping[str, float]) -> Path:
    """Keep the student / teacher mask IoU of each image (``OUT/student_disagreement.json``) for the queue."""
    path = Path(out) / DISAGREEMENT_FILE
    body = {"student": str(student), "images": {k: round(float(v), 4) for k, v in sorted(agreement.items())}}
    atomic_write_text(path, json.dumps(body, indent=1) + "\n")
    return path


def read_disagreement(out: str | Path) -> dict[str, float] | None:
    """Image -> student / teacher mask IoU, when a student's agreement was computed for the run; else None."""
    path = Path(out) / DISAGREEMENT_FILE
    if not path.is_file():
        return None
    return {str(k): float(v) for k, v in json.loads(path.read_text(encoding="utf-8"))["images"].items()}


def _records(out: Path, relatives: list[str], include_reviewed: bool) -> Iterator[dict[str, Any]]:
    for rel in relatives:
        record = read_record(out, rel, warn=False)
        if record is None:
            continue
        review = None if include_reviewed else read_review(out, rel)
        if review is not None and review.get("reviewed") and not is_stale(review, record):
            continue
        yield record
