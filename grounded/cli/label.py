"""``grounded label IMAGES_DIR``: auto-label a folder from class names into COCO / YOLO / VOC / mask PNGs.

Streamed (each image's result is on disk as soon as it is done) and resumable: run the same command again
after an interruption and it finishes the rest, giving the files an uninterrupted run gives.

Every entry named like an image ends as a record or an error row (unreadable, a dangling link, a folder,
out of memory, ...); one bad file never ends the run, and error rows are tried again only with
--retry-errors. --batch-size N runs N images per model call while a background thread decodes the next
ones; --engine ray runs the same on a Ray cluster (``pip install "grounded[ray]"``) and writes the same files.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from grounded.cli.common import Flags, add_model_arguments, add_tile_arguments, teacher_kwargs, tile_options
from grounded.errors import InputError
from grounded.label.export import FORMATS
from grounded.label.runner import ENGINES, LabelConfig

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


LABEL_TABLE = {  # LabelConfig field -> argparse keywords (+ grounded.cli.common's "flag", "default", "parse")
    "formats": {"flag": "--format", "nargs": "+", "action": "extend", "metavar": "FORMAT", "default": None,
                "parse": partial(parse_formats, default=()),
                "help": f"exports to write, any of {', '.join(FORMATS)} (space or comma separated; default: "
                        f"{' '.join(LabelConfig.formats)})"},
    "split": {"type": str, "help": "train,val[,test] fractions (default 0.8,0.2)"},
    "seed": {"help": "seed of the split and the preview sample (default %(default)s)"},
    "force": {"help": "start over if OUT holds a run with another ontology/model"},
    "preview": {"help": "images in OUT/preview.png (default %(default)s; 0: none)"},
    "copy_images": {"help": "copy images into YOLO/VOC/mask folders (default: links)"},
    "retry_errors": {"help": "label again the images that have an error row"},
    "progress": {"flag": "--no-progress", "help": "no progress bar"},
    "batch_size": {"help": "images per model call (default %(default)s)"},
    "soft_masks": {"help": "also store SAM's mask probabilities per image (OUT/soft/, 256 px) for grounded train "
                           "--soft-weight; SAM-family segmenters"},
}
RAY_TABLE = {
    "engine": {"choices": ENGINES, "help": "local: this process; ray: a pool of Ray Data actors (default %(default)s)"},
    "ray_address": {"help": "cluster to join (auto, ray://HEAD:10001, ...; default: start a local Ray)"},
    "workers": {"help": "Ray actors, each with its own models (default %(default)s)"},
    "gpus_per_worker": {"help": "GPUs per actor, e.g. 1 or 0.5 (default %(default)s)"},
    "cpus_per_worker": {"help": "CPUs reserved per actor (default %(default)s; whole CPUs can starve Ray Data's reads)"},
}
LABEL = Flags("label_fields", (LabelConfig,), (
    ("labelling run", LABEL_TABLE),
    ("engine (Ray: pip install \"grounded[ray]\")", RAY_TABLE),
), {
    "prefetch": "Python: LabelConfig(prefetch=...) (batches decoded ahead; the default keeps the models fed)",
    "tiling": "the --tile flags below (TileOptions, shared with grounded segment)",
    "max_side": "Python: LabelConfig(max_side=...) (the default, \"model\", reduces each image to what the loaded models read of it)",
})


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="auto-label a folder of images into a dataset (COCO, YOLO, VOC, masks)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of images, searched recursively")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ontology", type=Path, help="YAML ontology: classes with synonyms (see prompts/)")
    what.add_argument("--classes", help='comma-separated class names, e.g. "car, wheel, dog"')
    p.add_argument("--out", type=Path, required=True, help="output folder (created; resumed if it holds this run)")
    LABEL.add(p)
    add_model_arguments(p)
    add_tile_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.label import label
    from grounded.label.runner import as_ontology

    if not args.images.is_dir():
        raise InputError(f"IMAGES_DIR {str(args.images)!r} is not a folder; give the folder of images to label")
    ontology = as_ontology(args.ontology if args.ontology is not None else args.classes)
    tiling = tile_options(args)
    config = LabelConfig(**LABEL.read(args), tiling=tiling if tiling.enabled else None)
    summary = label(args.images, ontology, args.out, config=config, **teacher_kwargs(args))
    print(summary.table())
    print(f"dataset: {', '.join(summary.exports.values())}; preview: {summary.preview}; summary: {args.out / 'summary.json'}")
    return 0
