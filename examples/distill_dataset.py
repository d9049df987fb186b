"""Train a student on an existing dataset with the Python API, evaluate it, export it, and predict.

    python examples/distill_dataset.py ../shared/data/car_parts/train runs/car_parts --minutes 5
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
from grounded.distill.evaluate import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("out")
    parser.add_argument("--arch", default="unet", choices=["unet", "segformer", "backbone_unet"])
    parser.add_argument("--size", default=None, help="unet: tiny/small/base/large; segformer: b0..b5")
    parser.add_argument("--pretrained", default=None, help="Hugging Face name or local folder (segformer/backbone_unet)")
    parser.add_argument("--minutes", type=float, default=None, help="stop training after this long")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    student = StudentConfig(arch=args.arch, size=args.size or ("small" if args.arch == "unet" else "b0"),
                            pretrained=args.pretrained)
    config = TrainConfig(image_size=args.image_size, epochs=args.epochs, max_minutes=args.minutes,
                         lr=1e-3 if args.arch == "unet" else 1e-4)
    summary = train_run(args.dataset, args.out, student, config, export=True)
    print(f"best validation mIoU {summary['best_val_miou']:.3f} after {summary['steps']} steps; ONNX: {summary['onnx']}")

    metrics, report = evaluate_run(args.out, pairs=4)  # on the run's own validation split
    print(format_table(metrics))
    print(f"report and side-by-side pictures in {report}")

    predictor = StudentPredictor.load(f"{args.out}/student.onnx")  # the ONNX export alone is deployable
    image = open_dataset(args.dataset).val.image_path(0)
    detections = predictor.predict(image)  # sv.Detections: masks, boxes, confidences, class ids
    print(f"{image}: {len(detections)} instances: {sorted(set(detections.data['class_name'].tolist()))}")


if __name__ == "__main__":
    main()
