"""The review queue: which images of a labelling run most need a person, most doubtful first.

One ordering, used by every front end (the MCP server's ``review_queue`` tool today; a command and the review
page later). :func:`review_queue` is a pure function over records (:mod:`grounded.label.records`);
:func:`run_review_queue` reads a run folder and calls it.

A detection is doubtful for any of these reasons, each scored in [0, 1]:

- **near the threshold**: its score lies less than ``band`` above the box threshold its class was found
  with (the run's options and ontology): 1 at the threshold, 0 at ``band`` above it;
- **low score**: its score is below ``low_score`` (``1 - score / low_score``); the one signal left when the
  thresholds are unknown (a predictor that does not record its options);
- **CLIP disagreement**, where verification ran (``verify="clip"``): CLIP ``corrected`` the detector's label
  (``clip_corrected``) or was ``uncertain`` (``clip_uncertain``); ``confirmed`` detections add nothing.

An image's doubt is its most doubtful detection's; ties go to the image with more doubtful detections, then
to the path. Images with an error row (nothing to review), without detections, marked reviewed by a person
(a review made on the current record), or with no doubtful detection are left out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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

    @property
    def reasons(self) -> list[str]:
        return [reason for d in self.detections for reason in d.reasons]


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
) -> list[QueueItem]:
    """The images of ``records`` that most need a person, most doubtful first (see the module docstring).

    Args:
        records: label records (current schema: ``image``, ``detections`` or ``error``).
        thresholds: the box threshold of each class id, or None when unknown (then only scores and CLIP count).
        reviewed: images (record ``image`` paths) a person has already reviewed; left out.
        limit: at most this many images (None: all doubtful ones).
    """
    queue = []
    for record in records:
        if "error" in record or not record.get("detections") or record["image"] in reviewed:
            continue
        doubtful = []
        for index, item in enumerate(record["detections"]):
            class_id = item.get("class_id")
            known = thresholds is not None and isinstance(class_id, int) and 0 <= class_id < len(thresholds)
            doubt, reasons = detection_doubt(item, float(thresholds[class_id]) if known else None, settings)
            if doubt > 0:
                doubtful.append(DoubtfulDetection(index, item.get("class_name") or "", item.get("confidence"),
                                                  doubt, reasons))
        if doubtful:
            doubtful.sort(key=lambda d: (-d.doubt, d.index))
            queue.append(QueueItem(record["image"], doubtful[0].doubt, doubtful))
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
    return review_queue(_records(out, relatives, include_reviewed), run_thresholds(manifest), (), limit, settings)


def _records(out: Path, relatives: list[str], include_reviewed: bool) -> Iterator[dict[str, Any]]:
    for rel in relatives:
        record = read_record(out, rel, warn=False)
        if record is None:
            continue
        review = None if include_reviewed else read_review(out, rel)
        if review is not None and review.get("reviewed") and not is_stale(review, record):
            continue
        yield record
