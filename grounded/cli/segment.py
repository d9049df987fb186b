"""``grounded segment IMAGE... PROMPT``: masks for everything the prompt names, as PNG + JSON per image."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tqdm import tqdm

from grounded.cli.common import add_model_arguments, predictor_from_args
from grounded.errors import InputError

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  grounded segment truck.jpg "a wheel" --out out/
  grounded segment a.jpg b.jpg "car . wheel . headlight ." --box-threshold 0.3
  grounded segment photos/*.jpg --ontology prompts/car_parts.yaml --nms agnostic
  grounded segment truck.jpg "a wheel" --detector ./grounding-dino-tiny --segmenter ./sam-vit-base --offline

writes OUT/<image>.png (masks, boxes, labels) and OUT/<image>.json (boxes XYXY pixels, class, scores,
masks as COCO RLE) for each image."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment what a text prompt names in images",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE... PROMPT",
                   help='image files, then the prompt: a phrase ("a wheel"), a caption ("car . wheel .") '
                        "or comma-free class names; omit the prompt when --ontology is given")
    p.add_argument("--ontology", type=Path, help="YAML ontology (classes with synonyms) instead of a prompt")
    p.add_argument("--out", type=Path, default=Path("grounded_out"), help="output folder (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="images per batched forward pass (default 1)")
    p.add_argument("--no-labels", action="store_true", help="draw masks and boxes without text labels")
    add_model_arguments(p)
    p.set_defaults(func=run)


def _output_stems(images: list[Path]) -> list[str]:
    """File stems, made unique when two images share one (``a``, ``a_1``, ...)."""
    seen: dict[str, int] = {}
    stems = []
    for path in images:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        stems.append(path.stem if n == 0 else f"{path.stem}_{n}")
    return stems


def run(args: argparse.Namespace) -> int:
    from grounded.io.annotate import annotate
    from grounded.io.detections_json import detections_to_json, write_json
    from grounded.ontology import Ontology
    from grounded.utils.images import check_image_file, load_image

    if args.ontology is not None:
        prompt = Ontology.from_yaml(args.ontology)
        images = [Path(p) for p in args.inputs]
    else:
        if len(args.inputs) < 2:
            raise InputError('give at least one image and a prompt, e.g. grounded segment truck.jpg "a wheel"')
        prompt = Ontology.from_prompt(args.inputs[-1])
        images = [Path(p) for p in args.inputs[:-1]]
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    for path in images:  # a missing or empty file fails before any model loads
        check_image_file(path)
    predictor = predictor_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stems = _output_stems(images)
    with tqdm(total=len(images), desc="segment", unit="img", disable=len(images) < 2) as bar:
        for start in range(0, len(images), args.batch_size):  # decode per batch: memory flat over many images
            batch = images[start : start + args.batch_size]
            arrays = [load_image(p) for p in batch]
            results = predictor.segment_batch(arrays, prompt)
            for path, image, stem, dets in zip(batch, arrays, stems[start : start + len(batch)], results, strict=True):
                annotate(image, dets, labels=not args.no_labels).save(args.out / f"{stem}.png")
                write_json(detections_to_json(dets, image.shape[:2], str(path)), args.out / f"{stem}.json")
                logger.info("%s: %d detections", path, len(dets))
                bar.update(1)
    print(f"wrote {len(images)} PNG + JSON pair(s) to {args.out}")
    return 0
