"""``grounded train DATASET --out RUN``: train a small student on an existing dataset, then export it to ONNX.

DATASET: a ``grounded label`` run, a COCO json / folder, a YOLO-seg folder (data.yaml) or images/ + masks/.
The default student is FastSeg small (real-time, from scratch), trained within a 30-minute budget: the first
steps are timed, the steps that fit are fixed, and warm-up + cosine decay are laid over exactly those.
Re-running with the same --out resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grounded.cli.common import Flags
from grounded.distill.budget import parse_budget
from grounded.distill.config import AMP_MODES, ARCHS, StudentConfig, TrainConfig
from grounded.errors import InputError

EXAMPLES = """examples:
  grounded train runs/label_cars --out runs/student                       # FastSeg small, 30-minute budget
  grounded train ../shared/data/car_parts/train --out RUN --budget 2h --size base
  grounded train data/ --out RUN --arch unet --size tiny --epochs 20 --image-size 256
  grounded train small_data/ --out RUN --folds auto   # under 64 images: scored by 5-fold (RUN/folds/), not a test split
  grounded train data/ --out RUN --arch segformer --pretrained nvidia/mit-b0 --max-steps 2000
  grounded train data/ --out RUN --arch mobilenet_deeplab --pretrained google/deeplabv3_mobilenet_v2_1.0_513
  grounded train data/ --out RUN --arch backbone_unet --pretrained ./resnet-18   # local folder, offline

writes RUN/student.safetensors + student.json (best by validation mIoU), RUN/student.onnx, RUN/split.json
(the train / val / test images), RUN/history.json and RUN/training_curve.png; RUN/last.* and train_state.pt
to resume."""


STUDENT_TABLE = {  # StudentConfig field -> argparse keywords (+ grounded.cli.common's "flag", "default", "parse")
    "arch": {"choices": ARCHS, "help": "network (default %(default)s: FastSeg, real-time)"},
    "size": {"help": "fast: tiny | small | base (default small); unet: tiny | small | base | large; without "
                     "--pretrained: segformer b0..b5, mobilenet_deeplab / mobilevit a width multiplier (1.0)"},
    "pretrained": {"help": "transformers students: Hugging Face name or local folder"},
    "boundary_head": {"flag": "--no-boundary-head",
                      "help": "no instance-boundary channel (touching objects of a class then merge)"},
    "tta_flip": {"help": "predict and evaluate also on the mirrored image and average (left/right classes swapped; "
                         "twice the cost)"},
}
TRAINING_TABLE = {  # TrainConfig field -> argparse keywords
    "budget_minutes": {"flag": "--budget", "metavar": "DURATION", "parse": parse_budget,
                       "help": "plan the run to fit this wall time, e.g. 90s, 30m, 2h (default 30m when no length "
                               "is given)"},
    "epochs": {"type": int, "help": "count in epochs instead of a budget"},
    "batch_size": {"help": "default %(default)s"},
    "image_size": {"help": "training side in pixels (default %(default)s)"},
    "lr": {"type": float, "default": None, "help": "peak learning rate (default: by architecture)"},
    "focal_weight": {"flag": "--focal", "help": "weight of the focal term (default %(default)s)"},
    "soft_weight": {"help": "weight of the KL term to the teacher's soft masks (a `grounded label --soft-masks` run; "
                           "default %(default)s: hard labels only)"},
    "val_fraction": {"help": "validation share when the dataset has no val split (default %(default)s)"},
    "test_fraction": {"help": "held-out test share when the dataset has no test split, drawn first; nothing chooses "
                              "with it, evaluate reports it beside val (default %(default)s; 0: none)"},
    "folds": {"type": str, "metavar": "K|auto",
              "help": "score by k-fold instead of a test split: K students on K - 1 folds each, then the kept one on "
                      "all (a budget is shared K + 1 ways); auto: K = 5 when the test split would hold fewer than 10 "
                      "images (default %(default)s: off)"},
    "ema": {"help": "validate and keep an exponential moving average of the weights"},
    "ema_decay": {"help": "the average's decay per step (default %(default)s)"},
    "seed": {"help": "default %(default)s"},
    "max_minutes": {"type": float, "help": argparse.SUPPRESS},  # older name of --budget
    "max_steps": {"type": int, "help": "alone: train this many steps; with --budget / --epochs: stop after this many"},
    "device": {"help": "auto | cpu | cuda | cuda:1 ... (default %(default)s)"},
    "amp": {"choices": AMP_MODES,
            "help": "mixed precision: auto = float16 on CUDA only; bf16 = bfloat16 autocast (default %(default)s)"},
}
PYTHON_ONLY = "tuning left to Python (TrainConfig)"
STUDENT = Flags("student_fields", (StudentConfig,), (("student", STUDENT_TABLE),), {
    "class_names": "filled from the dataset",
    "base_channels": "unet: overrides --size's width (Python: StudentConfig)",
    "depth": "unet: overrides --size's depth (Python: StudentConfig)",
    "backbone_config": "backbone_unet without weights: a transformers config dict (Python: StudentConfig)",
    "decoder_channels": "backbone_unet: decoder width (Python: StudentConfig)",
    "hf_config": "filled when the student is built (offline reloads)",
    "mean": "input normalisation inside the model (ImageNet's; Python: StudentConfig)",
    "std": "input normalisation inside the model (ImageNet's; Python: StudentConfig)",
})
TRAINING = Flags("train_fields", (TrainConfig,), (
    ("training (length: --budget, or --epochs, or --max-steps; default --budget 30m)", TRAINING_TABLE),), {
    **{name: PYTHON_ONLY for name in ("weight_decay", "warmup_steps", "min_lr_ratio", "dice_weight", "focal_gamma", "lovasz_weight",
                                      "boundary_weight", "class_weights", "loss_scale", "channels_last", "val_every",
                                      "checkpoint_every", "num_workers", "augment")},
    "total_steps": "set by the plan (--budget, --epochs or --max-steps)",
})


def add_student_arguments(p: argparse.ArgumentParser, device: bool = True) -> None:
    """Student and training flags (generated from StudentConfig / TrainConfig), shared with ``grounded
    distill``; ``device=False``: the command's own --device (the teacher's) serves the student too."""
    STUDENT.add(p)
    groups = TRAINING.add(p, shared=() if device else ("device",))
    groups[TRAINING.groups[0][0]].add_argument("--no-resume", action="store_true",
                                               help="start over even if --out holds an unfinished run")


def configs_from_args(args: argparse.Namespace):  # noqa: ANN201
    """(StudentConfig, TrainConfig) from parsed arguments: every student and training flag, by field."""
    from grounded.distill.workflow import default_lr

    student = StudentConfig(**STUDENT.read(args))  # an unset --size: the arch's (StudentConfig.size)
    if student.arch == "backbone_unet" and not student.pretrained:
        raise InputError("--arch backbone_unet needs --pretrained NAME_OR_FOLDER (e.g. microsoft/resnet-18)")
    settings = TRAINING.read(args)
    settings.setdefault("lr", default_lr(student))  # an unset --lr: by architecture
    return student, TrainConfig(**settings)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a small student model on a labelled dataset",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", type=Path, help="label run, COCO json/folder, YOLO-seg folder or images/ + masks/")
    p.add_argument("--out", type=Path, required=True, help="run folder (created; resumed if unfinished)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    p.add_argument("--evaluate", action="store_true", help="also evaluate on the validation split (RUN/eval/)")
    p.add_argument("--strict", action="store_true",
                   help="refuse a dataset with any unusable image or annotation (default: skip them, with a count)")
    add_student_arguments(p)
    p.set_defaults(func=run)


def reviewed_export(dataset: Path) -> None:
    """A label run whose reviews are newer than its COCO export: export it again first, so the student trains on
    the corrected labels (``grounded export`` applies the reviews)."""
    from grounded.label import export_run
    from grounded.label.reviews import reviews_newer_than, summarise_reviews

    if (dataset / "run.json").is_file() and reviews_newer_than(dataset, dataset / "coco" / "train.json"):
        export_run(dataset, ["coco"])
        counts = summarise_reviews(dataset)
        print(f"{dataset}: COCO export rebuilt with the reviews ({counts['accepted']} accepted, {counts['rejected']} "
              f"rejected, {counts['added']} added, {counts['fixed']} fixed)")


def run(args: argparse.Namespace) -> int:
    from grounded.distill.data import open_dataset
    from grounded.distill.workflow import train_run

    student, config = configs_from_args(args)
    reviewed_export(args.dataset)
    dataset = open_dataset(args.dataset, config.val_fraction, config.seed, strict=args.strict,
                           test_fraction=config.test_fraction)
    summary = train_run(dataset, args.out, student, config, resume=not args.no_resume,
                        export=not args.no_export, evaluate=args.evaluate)
    print(f"student {student.arch}/{student.size}: {summary['params'] / 1e6:.2f} M parameters, "
          f"{summary['gflops']:.2f} GFLOPs per {summary['image_size']} px image; trained {summary['steps']} steps "
          f"(planned {summary['planned_steps']}) in {summary['train_minutes']:.1f} min, final lr {summary['final_lr']:.2e}")
    print(json.dumps(summary, indent=2))
    return 0
