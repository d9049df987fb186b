"""The whole loop on a folder of unlabelled photos: label with the teacher, train a student, evaluate, export.

    python examples/distill_folder.py photos/ runs/cars --ontology prompts/car_parts.yaml
    python examples/distill_folder.py photos/ runs/demo --classes "car, wheel" --fake    # no models: test double

Without --fake this loads Grounding DINO + SAM (``grounded.Predictor()``) to label the images, once: a
finished labelling run in OUT/labels is reused. The student lands in OUT/student (student.onnx inside).
"""

from __future__ import annotations

import argparse
import logging

from grounded.distill import StudentConfig, TrainConfig, distill
from grounded.distill.budget import parse_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images")
    parser.add_argument("out")
    parser.add_argument("--ontology", help="YAML ontology, e.g. prompts/car_parts.yaml")
    parser.add_argument("--classes", default="car, wheel", help="comma-separated class names (no --ontology)")
    parser.add_argument("--fake", action="store_true", help="label with grounded.testing.fake.FakePredictor")
    parser.add_argument("--budget", default="10m", help="training time for the student, e.g. 90s, 30m, 2h")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    teacher = None  # default: grounded.Predictor(), loaded only if labelling is needed
    if args.fake:
        from grounded.testing.fake import FakePredictor

        teacher = FakePredictor()
    summary = distill(args.images, args.ontology or args.classes, args.out,
                      StudentConfig(), TrainConfig(budget_minutes=parse_budget(args.budget)),
                      predictor=teacher)
    print(f"labels: {summary['labels']} (reused: {summary['labels_reused']})")
    print(f"student: {summary['onnx']}; validation mIoU {summary['eval']['miou']:.3f}, mask AP {summary['eval']['mask_ap']:.3f}")


if __name__ == "__main__":
    main()
