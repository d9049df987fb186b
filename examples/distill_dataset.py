"""Train a student on an existing dataset with the Python API, evaluate it, export it, and predict.

    python examples/distill_dataset.py ../shared/data/car_parts/train runs/car_parts --budget 5m
    python examples/distill_dataset.py labelled_run/ runs/student --arch segformer --pretrained nvidia/mit-b0

The dataset may be a ``grounded label`` run, a COCO json or folder, a YOLO-seg folder or images/ + masks/.
Re-running the same command resumes an interrupted training run.
"""

from __future__ import annotations

import argparse
import logging

from grounded.distill import (
    StudentConfig,
    StudentPredictor,
    TrainConfig,
    evaluate_run,
    open_dataset,
    train_run,
)
from grounded.distill.budget import parse_budget
from grounded.distill.config import ARCHS
from grounded.distill.evaluate import format_table
from grounded.distill.workflow import default_lr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--arch", default="fast", choices=list(ARCHS))
    parser.add_argument("--size", default="small", help="fast: tiny/small/base; unet: tiny/small/base/large")
    parser.add_argument("--pretrained", default=None, help="transformers students: Hugging Face name or local folder")
    parser.add_argument("--budget", default="5m", help="training time, e.g. 90s, 30m, 2h (the schedule fits it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    student = StudentConfig(arch=args.arch, size=args.size, pretrained=args.pretrained)
    config = TrainConfig(budget_minutes=parse_budget(args.budget), lr=default_lr(student))
    summary = train_run(args.dataset, args.out, student, config, export=True)
    print(f"{summary['params'] / 1e6:.2f} M parameters, {summary['gflops']:.2f} GFLOPs per image; best validation "
          f"mIoU {summary['best_val_miou']:.3f} after {summary['steps']} steps; ONNX: {summary['onnx']}")

    metrics, report = evaluate_run(args.out, pairs=4)  # on the run's own validation split
    print(format_table(metrics))
    print(f"report and side-by-side pictures in {report}")

    predictor = StudentPredictor.load(f"{args.out}/student.onnx")  # the ONNX export alone is deployable
    image = open_dataset(args.dataset).val.image_path(0)
    detections = predictor.predict(image)  # sv.Detections: masks, boxes, confidences, class ids
    print(f"{image}: {len(detections)} instances: {sorted(set(detections.data['class_name'].tolist()))}")


if __name__ == "__main__":
    main()
