"""``grounded evaluate RUN``: per-class IoU, mIoU, pixel accuracy and mask AP (pycocotools) of a student.

RUN: a ``grounded train`` run folder, a student ``.safetensors`` or ``.onnx``, scored on the run's own
validation and held-out test splits side by side (per-class IoU, mIoU with a 95% bootstrap interval over
images, and the val - test gap), or on ALL of the dataset --data names (one split of it with --split); or a
``grounded label`` run, whose (teacher) labels are scored against the ground truth given with --data.
Students with a boundary head are scored for instances both ways: boundary-aware and connected components.
Writes metrics.json and metrics.txt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  grounded evaluate runs/student                              # its val and test splits -> runs/student/eval/
  grounded evaluate runs/student/student.onnx --pairs 8        # the ONNX export, 8 side-by-side PNGs
  grounded evaluate runs/student --data other_dataset/                # all of it
  grounded evaluate runs/student --data other_dataset/ --split val    # its validation split only
  grounded evaluate runs/label_cars --data ground_truth/       # the teacher's labels against ground truth"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a student (or a label run) against ground truth",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="training run folder, student .safetensors/.onnx, or label run")
    p.add_argument("--data", type=Path, default=None, help="dataset to score on, all of it (default: the run's own val split)")
    p.add_argument("--split", choices=["all", "val", "test", "train"], default=None,
                   help="which part (default: val + test of the run's own dataset, all of --data)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default RUN/eval)")
    p.add_argument("--pairs", type=int, default=0, help="write this many image | truth | prediction PNGs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.distill.evaluate import format_table
    from grounded.distill.workflow import evaluate_run
    from grounded.errors import InputError

    if args.pairs < 0:
        raise InputError(f"--pairs must be 0 or more, got {args.pairs}")
    metrics, where = evaluate_run(args.run, args.data, args.split, args.out, args.pairs)
    print(format_table(metrics))
    print(f"wrote {where / 'metrics.json'} and {where / 'metrics.txt'}")
    return 0
