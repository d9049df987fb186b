"""``grounded label IMAGES_DIR``: auto-label a folder from class names into COCO / YOLO / VOC / mask PNGs.

Streamed (each image's result is on disk as soon as it is done) and resumable: run the same command again
after an interruption and it finishes the rest, giving the files an uninterrupted run gives.

Every entry named like an image ends as a record or an error row (unreadable, a dangling link, a folder,
out of memory, ...); one bad file never ends the run, and error rows are tried again only with
--retry-errors. --batch-size N runs N images per model call while a background thread decodes the next
ones; --engine ray runs the same on a Ray cluster (``pip install "grounded[ray]"``) and writes the same files.

Testing only: with the environment variable ``GROUNDED_FAKE_PREDICTOR=1`` the models are replaced by
:class:`grounded.testing.fake.FakePredictor` (known detections, no weights; ``GROUNDED_FAKE_DELAY`` slows it,
``GROUNDED_FAKE_EXIT_ONCE`` makes one worker die once).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from grounded.cli.common import add_model_arguments, add_tile_arguments, teacher_kwargs, tile_options
from grounded.errors import InputError

EXAMPLES = """examples:
  grounded label photos/ --classes "car, wheel, dog" --out labelled/
  grounded label photos/ --ontology prompts/car_parts.yaml --out parts/ --format coco yolo-seg masks
  grounded label photos/ --ontology prompts/coco.yaml --out ds/ --split 0.7,0.2,0.1 --seed 1
  grounded label photos/ --classes "car" --out ds/ --detector ./gdino --segmenter ./sam --offline
  grounded label photos/ --classes "car, wheel" --out ds/ --batch-size 4
  grounded label drone/ --classes "car, person" --out ds/ --tile auto     # large photos, small objects
  grounded label /shared/photos --classes "car, wheel" --out /shared/ds --engine ray --ray-address auto \
      --workers 8 --gpus-per-worker 1 --batch-size 4

writes OUT/run.json (images root, ontology, model), OUT/records/ (one JSON per image, masks as RLE),
the exports (OUT/coco/train.json, OUT/yolo/data.yaml, ...), OUT/errors.json, OUT/preview.png and
OUT/summary.json. Re-run the same command to resume; --force to start over with other settings."""


def add_format_argument(parser: argparse.ArgumentParser, default: list[str] | None) -> None:
    from grounded.label.export import FORMATS

    parser.add_argument(
        "--format", dest="formats", nargs="+", action="extend", metavar="FORMAT",
        help=f"exports to write, any of {', '.join(FORMATS)} (space or comma separated; default: coco yolo)"
        if default else f"formats to (re)build, any of {', '.join(FORMATS)}",
        required=default is None,
    )


def parse_formats(values: list[str] | None, default: list[str]) -> list[str]:
    if not values:
        return list(default)
    return [f.strip() for value in values for f in value.split(",") if f.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="auto-label a folder of images into a dataset (COCO, YOLO, VOC, masks)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of images, searched recursively")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ontology", type=Path, help="YAML ontology: classes with synonyms (see prompts/)")
    what.add_argument("--classes", help='comma-separated class names, e.g. "car, wheel, dog"')
    p.add_argument("--out", type=Path, required=True, help="output folder (created; resumed if it holds this run)")
    add_format_argument(p, default=["coco", "yolo"])
    p.add_argument("--split", default="0.8,0.2", help="train,val[,test] fractions (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the preview sample (default 0)")
    p.add_argument("--force", action="store_true", help="start over if OUT holds a run with another ontology/model")
    p.add_argument("--preview", type=int, default=16, help="images in OUT/preview.png (default 16; 0: none)")
    p.add_argument("--copy-images", action="store_true", help="copy images into YOLO/VOC/mask folders (default: links)")
    p.add_argument("--retry-errors", action="store_true", help="label again the images that have an error row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call (default %(default)s)")
    scale = p.add_argument_group("engine (Ray: pip install \"grounded[ray]\")")
    scale.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local: this process; ray: a pool of Ray Data actors (default %(default)s)")
    scale.add_argument("--ray-address", default=None,
                       help="cluster to join (auto, ray://HEAD:10001, ...; default: start a local Ray)")
    scale.add_argument("--workers", type=int, default=1, help="Ray actors, each with its own models (default 1)")
    scale.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor, e.g. 1 or 0.5 (default 0)")
    scale.add_argument("--cpus-per-worker", type=float, default=0.5,
                       help="CPUs reserved per actor (default %(default)s; whole CPUs can starve Ray Data's reads)")
    add_model_arguments(p)
    add_tile_arguments(p)
    p.set_defaults(func=run)


def _predictor(args: argparse.Namespace) -> dict:
    """``label`` keyword arguments naming the predictor; it is built after the run's lock is taken."""
    if os.environ.get("GROUNDED_FAKE_PREDICTOR") == "1":  # testing only: no models
        from grounded.testing.fake import fake_factory_from_env

        return {"predictor": fake_factory_from_env()}
    return teacher_kwargs(args)


def run(args: argparse.Namespace) -> int:
    from grounded.label import label
    from grounded.label.runner import as_ontology

    if not args.images.is_dir():
        raise InputError(f"IMAGES_DIR {str(args.images)!r} is not a folder; give the folder of images to label")
    ontology = as_ontology(args.ontology if args.ontology is not None else args.classes)
    tiling = tile_options(args)
    summary = label(
        args.images, ontology, args.out,
        formats=parse_formats(args.formats, ["coco", "yolo"]),
        split=args.split, seed=args.seed, force=args.force, retry_errors=args.retry_errors, preview=args.preview,
        copy_images=args.copy_images, progress=not args.no_progress, batch_size=args.batch_size,
        engine=args.engine, ray_address=args.ray_address, workers=args.workers,
        gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
        tiling=tiling if tiling.enabled else None, **_predictor(args),
    )
    print(summary.table())
    print(f"dataset: {', '.join(summary.exports.values())}; preview: {summary.preview}; summary: {args.out / 'summary.json'}")
    return 0
