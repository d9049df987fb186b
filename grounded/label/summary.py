"""The result of ``grounded.label``: counts, times, where things are; as a table and ``summary.json``.

``summary.json`` is the only file of a run with times in it; the dataset files are byte-identical across
equal runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grounded.formats.files import atomic_write_text

SUMMARY_FILE = "summary.json"


@dataclass
class LabelSummary:
    """What a labelling run did and what its dataset holds."""

    out: str
    images: int  # found below the images root
    labelled: int  # with a finished record (this run or an earlier one)
    processed: int  # labelled by this run
    resumed: int  # finished by an earlier run, skipped by this one
    empty: int  # labelled, no detection: kept as negatives
    errors: list[dict[str, str]]  # {"file", "reason"}: unreadable images, left out
    instances: dict[str, int]  # per class, ontology order
    splits: dict[str, int]  # labelled images per split
    exports: dict[str, str]  # format -> folder
    preview: str | None  # preview grid PNG
    seconds: float  # wall time of this run
    model_seconds: float  # time inside the predictor
    images_per_second: float  # processed / seconds (0 when nothing was processed)
    extra: dict = field(default_factory=dict)
    dropped_empty_masks: int = 0  # detections left out of every export: their mask has no pixel

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, out: str | Path) -> Path:
        path = Path(out) / SUMMARY_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def table(self) -> str:
        """A plain-text table: totals, then instances per class."""
        rows = [
            ("images found", str(self.images)),
            ("labelled", f"{self.labelled} ({self.processed} now, {self.resumed} resumed)"),
            ("empty (negatives)", str(self.empty)),
            ("empty masks dropped", str(self.dropped_empty_masks)),
            ("errors", str(len(self.errors))),
            ("splits", ", ".join(f"{k} {v}" for k, v in self.splits.items())),
            ("time", f"{self.seconds:.1f} s ({self.images_per_second:.2f} img/s, model {self.model_seconds:.1f} s)"),
        ]
        rows += [(f"  {name}", str(count)) for name, count in self.instances.items()]
        rows.insert(7, ("instances", str(sum(self.instances.values()))))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        for error in self.errors[:10]:
            lines.append(f"error: {error['file']}: {error['reason']}")
        if len(self.errors) > 10:
            lines.append(f"... and {len(self.errors) - 10} more errors in errors.json")
        return "\n".join(lines)
