"""``grounded train DATASET --out RUN``: train a small student on an existing dataset, then export it to ONNX.

DATASET: a ``grounded label`` run, a COCO json / folder, a YOLO-seg folder (data.yaml) or images/ + masks/.
Re-running with the same --out resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grounded.errors import InputError

EXAMPLES = """examples:
  grounded train runs/label_cars --out runs/student                      # U-Net, small, from scratch
  grounded train ../shared/data/car_parts/train --out RUN --size tiny --epochs 20 --image-size 256
  grounded train data/ --out RUN --arch segformer --pretrained nvidia/mit-b0
  grounded train data/ --out RUN --arch backbone_unet --pretrained ./resnet-18   # local folder, offline

writes RUN/student.safetensors + student.json (best by validation mIoU), RUN/student.onnx,
RUN/history.json and RUN/training_curve.png; RUN/last.* and train_state.pt to resume."""


def add_student_arguments(p: argparse.ArgumentParser, device: bool = True) -> None:
    """Student and training options, shared with ``grounded distill``."""
    from grounded.distill.config import ARCHS, TrainConfig

    d = TrainConfig()
    s = p.add_argument_group("student")
    s.add_argument("--arch", choices=ARCHS, default="unet", help="network (default %(default)s)")
    s.add_argument("--size", default=None,
                   help="unet: tiny | small | base | large (default small); segformer without --pretrained: b0..b5")
    s.add_argument("--pretrained", default=None, help="segformer / backbone_unet: Hugging Face name or local folder")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    t.add_argument("--image-size", type=int, default=d.image_size, help="training side in pixels (default %(default)s)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default: by architecture)")
    t.add_argument("--focal", type=float, default=d.focal_weight, help="weight of the focal term (default %(default)s)")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="validation share when the dataset has no val split (default %(default)s)")
    t.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    t.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    t.add_argument("--max-steps", type=int, default=None, help="stop training after this many steps")
    if device:
        t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 ... (default %(default)s)")
    t.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                   help="mixed precision: auto = float16 on CUDA only; bf16 = bfloat16 autocast (default %(default)s)")
    t.add_argument("--no-resume", action="store_true", help="start over even if --out holds an unfinished run")


def configs_from_args(args: argparse.Namespace):  # noqa: ANN201
    """(StudentConfig, TrainConfig) from parsed arguments."""
    from grounded.distill.config import StudentConfig, TrainConfig
    from grounded.distill.workflow import default_lr

    size = args.size or ("small" if args.arch == "unet" else "b0")
    student = StudentConfig(arch=args.arch, size=size, pretrained=args.pretrained)
    if args.arch == "backbone_unet" and not args.pretrained:
        raise InputError("--arch backbone_unet needs --pretrained NAME_OR_FOLDER (e.g. microsoft/resnet-18)")
    config = TrainConfig(
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else default_lr(student), focal_weight=args.focal,
        val_fraction=args.val_fraction, seed=args.seed, max_minutes=args.max_minutes, max_steps=args.max_steps,
        device=args.device or "auto", amp=args.amp,
    )
    return student, config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a small student model on a labelled dataset",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="label run, COCO json/folder, YOLO-seg folder or images/ + masks/")
    p.add_argument("--out", type=Path, required=True, help="run folder (created; resumed if unfinished)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    p.add_argument("--evaluate", action="store_true", help="also evaluate on the validation split (RUN/eval/)")
    add_student_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.distill.workflow import train_run

    student, config = configs_from_args(args)
    summary = train_run(args.dataset, args.out, student, config, resume=not args.no_resume,
                        export=not args.no_export, evaluate=args.evaluate)
    print(json.dumps(summary, indent=2))
    return 0
