"""``grounded review-queue RUN``: the images of a labelling run that most need a person, most doubtful first.

The ordering is :mod:`grounded.label.queue`'s (the review page and the MCP server show the same): detections
just above their class's threshold, low scores, CLIP disagreement where verification ran and, with
``--student`` (a ``grounded train`` run on this labelling run), images where the student and the teacher disagree
(mask IoU; kept in ``RUN/student_disagreement.json`` for the page and later calls).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

EXAMPLES = """examples:
  grounded review-queue labelled/                      # the 20 most doubtful images
  grounded review-queue labelled/ --student runs/student --limit 50
  grounded review-queue labelled/ --json > queue.json"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review-queue", help="list the images of a labelled run most needing a person",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, metavar="RUN", help="output folder of a `grounded label` run")
    p.add_argument("--limit", type=int, default=20, help="at most this many images (default %(default)s; 0: all)")
    p.add_argument("--include-reviewed", action="store_true", help="also images a person marked reviewed")
    p.add_argument("--student", type=Path, default=None,
                   help="a student trained on this run (run folder, .safetensors or .onnx): adds its disagreement "
                        "with the teacher")
    p.add_argument("--device", default="auto", help="for --student: auto | cpu | cuda ... (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the queue as JSON")
    p.set_defaults(func=run)


def student_agreement(out: Path, student: Path, device: str = "auto") -> dict[str, float]:
    """Run ``student`` over the run's labelled images; image -> mask IoU with the teacher's record (written to
    ``OUT/student_disagreement.json``)."""
    import numpy as np
    from tqdm import tqdm

    from grounded.distill.predictor import StudentPredictor
    from grounded.errors import InputError
    from grounded.label.manifest import read_manifest
    from grounded.label.queue import class_mask_iou, write_disagreement
    from grounded.label.records import image_relatives, read_record, record_to_detections

    manifest = read_manifest(out)
    root, classes = Path(manifest["images_root"]), list(manifest["classes"])
    predictor = StudentPredictor.load(student, device=device)
    agreement: dict[str, float] = {}
    for rel in tqdm(image_relatives(root, out), desc="student", unit="img"):
        record = read_record(out, rel, warn=False)
        if record is None or "error" in record:
            continue
        found = predictor.predict(root / rel)
        names = [str(n) for n in found.data.get("class_name", [])]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise InputError(f"the student {str(student)!r} predicts classes {unknown} this run does not have "
                             f"({classes}): give a student trained on this run")
        found.class_id = np.asarray([classes.index(n) for n in names], dtype=int)
        agreement[rel] = class_mask_iou(record_to_detections(record, with_masks=True), found)
    write_disagreement(out, str(student), agreement)
    return agreement


def run(args: argparse.Namespace) -> int:
    from grounded.label.queue import run_review_queue

    if args.student is not None:
        agreement = student_agreement(args.run, args.student, args.device)
        low = sum(v < 0.9 for v in agreement.values())
        print(f"student vs teacher: {len(agreement)} images, {low} with mask IoU below 0.9")
    queue = run_review_queue(args.run, args.limit or None, args.include_reviewed)
    if args.json:
        print(json.dumps([{**asdict(q), "reasons": q.reasons} for q in queue], indent=1))
        return 0
    if not queue:
        print("nothing to review: no doubtful image left")
        return 0
    width = max(len(q.file) for q in queue)
    for rank, q in enumerate(queue, 1):
        why = "; ".join(q.reasons[:2]) + (f" (+{len(q.reasons) - 2} more)" if len(q.reasons) > 2 else "")
        print(f"{rank:>3}  {q.doubt:.2f}  {q.file.ljust(width)}  {why}")
    return 0
