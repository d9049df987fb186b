"""``grounded predict --model STUDENT IMAGE...``: run a trained student; PNG + JSON per image, as ``segment``.

STUDENT: a ``grounded train`` run folder, a ``student.safetensors`` or a ``student.onnx`` (onnxruntime).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  grounded predict --model runs/student/student.onnx photo.jpg --out pred/
  grounded predict --model runs/student photos/*.jpg --min-area 64

writes OUT/<image>.png (masks, boxes, labels) and OUT/<image>.json (boxes XYXY pixels, class, confidence,
masks as COCO RLE), the same files as `grounded segment`."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with a trained student (torch or ONNX)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--model", type=Path, required=True, help="run folder, student.safetensors or student.onnx")
    p.add_argument("--out", type=Path, default=Path("grounded_out"), help="output folder (default %(default)s)")
    p.add_argument("--min-area", type=int, default=16, help="drop instances smaller than this many pixels")
    p.add_argument("--device", default="auto", help="torch students: auto | cpu | cuda ... (default %(default)s)")
    p.add_argument("--no-labels", action="store_true", help="draw masks and boxes without text labels")
    p.add_argument("--instances", choices=["boundary", "components"], default="boundary",
                   help="split touching objects with the boundary head (default), or connected components")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from grounded.cli.segment import _output_stems
    from grounded.distill.predictor import StudentPredictor
    from grounded.io.annotate import annotate
    from grounded.io.detections_json import detections_to_json, write_json
    from grounded.utils.images import load_image

    arrays = [load_image(path) for path in args.images]  # a bad file fails before the model loads
    predictor = StudentPredictor.load(args.model, device=args.device, min_area=args.min_area)
    predictor.instances = args.instances
    args.out.mkdir(parents=True, exist_ok=True)
    for path, stem, image in tqdm(list(zip(args.images, _output_stems(args.images), arrays, strict=True)), desc="predict",
                                  unit="img", disable=len(args.images) < 2):
        detections = predictor.predict(image)
        annotate(image, detections, labels=not args.no_labels).save(args.out / f"{stem}.png")
        write_json(detections_to_json(detections, image.shape[:2], str(path)), args.out / f"{stem}.json")
        counts = ", ".join(f"{n} {name}" for name, n in zip(*np.unique(detections.data.get("class_name", []),
                                                                          return_counts=True), strict=True))
        print(f"{path}: {len(detections)} instance(s){': ' + counts if counts else ''}")
    print(f"wrote {len(args.images)} PNG + JSON pair(s) to {args.out}")
    return 0
