"""``grounded distill IMAGES_DIR --ontology X.yaml --out RUN``: the whole loop in one command.

Labels the images with the teacher (Grounding DINO + SAM, or the models the teacher flags name) into RUN/labels,
trains a student on those labels into RUN/student, evaluates it on the labels' validation split
(RUN/student/eval) and exports RUN/student/student.onnx. Re-running resumes whichever step was interrupted.

On a re-run the teacher is loaded and its full settings (models, dtype, every detection option, speed settings,
CLIP) are compared with those RUN/labels was made with, with the images folder and the ontology: equal, the
labels are reused; different, the run is refused naming each changed setting, or with --force labelled again
and the student retrained from scratch. --no-resume retrains the student from scratch and keeps the labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grounded.cli.common import add_model_arguments, teacher_kwargs
from grounded.cli.train import add_student_arguments, configs_from_args
from grounded.errors import InputError

EXAMPLES = """examples:
  grounded distill photos/ --ontology prompts/car_parts.yaml --out runs/cars
  grounded distill photos/ --classes "car, wheel" --out runs/cars --arch segformer --pretrained nvidia/mit-b0
  grounded distill photos/ --ontology prompts/car_parts.yaml --out runs/cars --detector ./gdino --segmenter ./sam --offline

then: grounded predict --model runs/cars/student/student.onnx new_photo.jpg"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="label a folder with the teacher, then train, evaluate and export a student",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of images, searched recursively")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ontology", type=Path, help="YAML ontology: classes with synonyms (see prompts/)")
    what.add_argument("--classes", help='comma-separated class names, e.g. "car, wheel, dog"')
    p.add_argument("--out", type=Path, required=True, help="run folder: labels/ and student/ go inside")
    p.add_argument("--force", action="store_true", help="label again when the teacher's settings, the ontology or "
                   "the images differ from RUN/labels' (default: refuse, naming them), then retrain the student")
    add_student_arguments(p, device=False)  # --device comes with the model arguments and serves both
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.distill.workflow import distill

    if not args.images.is_dir():
        raise InputError(f"IMAGES_DIR {str(args.images)!r} is not a folder; give the folder of images to label")
    student, config = configs_from_args(args)
    options = teacher_kwargs(args)  # distill() loads the teacher: its describe() is checked against the labels'
    ontology = args.ontology if args.ontology is not None else args.classes
    summary = distill(args.images, ontology, args.out, student, config,
                      resume=not args.no_resume, force=args.force, **options)
    print(json.dumps(summary, indent=2))
    return 0
