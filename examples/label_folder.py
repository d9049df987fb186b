"""Auto-label a folder of images with the Python API, then read the COCO export back.

    python examples/label_folder.py photos/ out/ --ontology prompts/driving.yaml
    python examples/label_folder.py photos/ out/ --classes "car, wheel" --fake     # no models: the test double

Without --fake this loads Grounding DINO + SAM (``grounded.Predictor()``: Hugging Face names, or pass
folders with --detector / --segmenter). Re-running the same command resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

import grounded.label as gl
from grounded.formats.coco import CocoDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--ontology", help="YAML ontology, e.g. prompts/coco.yaml")
    parser.add_argument("--classes", default="car, wheel", help="comma-separated class names (no --ontology)")
    parser.add_argument("--detector", help="Grounding DINO name or folder")
    parser.add_argument("--segmenter", help="SAM name or folder")
    parser.add_argument("--fake", action="store_true", help="use grounded.testing.fake.FakePredictor (no models)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    predictor = None
    if args.fake:
        from grounded.testing.fake import FakePredictor

        predictor = FakePredictor()
    elif args.detector or args.segmenter:
        from grounded.pipeline.predictor import Predictor

        models = {k: v for k, v in (("detector", args.detector), ("segmenter", args.segmenter)) if v}
        predictor = Predictor(**models)

    summary = gl.label(args.images, args.ontology or args.classes, args.out, predictor=predictor,
                       formats=["coco", "yolo-seg", "masks"], split="0.8,0.2", seed=0)
    print(summary.table())

    # The export is ordinary COCO: read it back lazily (masks decoded one image at a time).
    val = CocoDataset(f"{args.out}/coco/val.json", images_root=args.images)
    for index in range(min(3, len(val))):
        path, detections = val[index]
        names, counts = np.unique(detections.data["class_name"], return_counts=True)
        print(path, dict(zip(names.tolist(), counts.tolist(), strict=True)))


if __name__ == "__main__":
    main()
