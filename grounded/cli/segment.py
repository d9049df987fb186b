"""``grounded segment IMAGE... PROMPT``: masks for everything the prompt names, as PNG + JSON per image."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from grounded.cli.common import add_model_arguments, add_tile_arguments, predictor_from_args, tile_options
from grounded.errors import InputError
from grounded.formats.files import output_stems as _output_stems  # also used by `grounded predict`

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  grounded segment truck.jpg "a wheel" --out out/
  grounded segment a.jpg b.jpg "car . wheel . headlight ." --box-threshold 0.3
  grounded segment photos/*.jpg --ontology prompts/car_parts.yaml --nms agnostic
  grounded segment truck.jpg "a wheel" --detector ./grounding-dino-tiny --segmenter ./sam-vit-base --offline
  grounded segment truck.jpg "a wheel" --model facebook/sam3          # a concept segmenter (SAM 3)
  grounded segment drone.jpg "a car" --tile auto                       # large image, small objects: slices

writes OUT/<image>.png (masks, boxes, labels) and OUT/<image>.json (boxes XYXY pixels, class, scores,
masks as COCO RLE) for each image. An image that fails is reported on one line
(grounded: error: FILE: TYPE: reason) and the others go on; the exit status is 1 if any failed, 2 for
an error before any image is read (bad prompt, option or model)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment what a text prompt names in images",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE... PROMPT",
                   help='image files, then the prompt: a phrase ("a wheel"), a caption ("car . wheel .") '
                        "or comma-free class names; omit the prompt when --ontology is given")
    p.add_argument("--ontology", type=Path, help="YAML ontology (classes with synonyms) instead of a prompt")
    p.add_argument("--out", type=Path, default=Path("grounded_out"), help="output folder (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call, each computed as if alone (default 1)")
    p.add_argument("--no-labels", action="store_true", help="draw masks and boxes without text labels")
    add_model_arguments(p)
    add_tile_arguments(p)
    p.set_defaults(func=run)


def _fault(path: Path, exc: BaseException) -> None:
    """One line on stderr for an image that failed: file, exception type, first line of the reason."""
    reason = (str(exc).strip().splitlines() or [""])[0][:300]
    tqdm.write(f"grounded: error: {path}: {type(exc).__name__}: {reason}", file=sys.stderr)  # on its own line
    logger.debug("%s failed", path, exc_info=exc)


def run(args: argparse.Namespace) -> int:
    """Segment each image; an image that fails is reported on one line and the rest go on (exit 1 if any failed)."""
    from grounded.ontology import Ontology
    from grounded.utils.images import check_image_file

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
    tiling = tile_options(args)
    failed = 0
    readable = []  # (path, output stem)
    for path, stem in zip(images, _output_stems(images), strict=True):  # missing / empty files: before any model
        try:
            check_image_file(path)
            readable.append((path, stem))
        except InputError as exc:
            _fault(path, exc)
            failed += 1
    written = 0
    if readable:
        from grounded.pipeline.tiled import with_tiling

        predictor = predictor_from_args(args)
        predictor.check_options(ontology=prompt)  # a threshold the ontology sets that the models refuse
        predictor = with_tiling(predictor, tiling)
        args.out.mkdir(parents=True, exist_ok=True)
        with tqdm(total=len(readable), desc="segment", unit="img", disable=len(readable) < 2) as bar:
            for start in range(0, len(readable), args.batch_size):  # decode per batch: memory flat over many images
                batch = readable[start : start + args.batch_size]
                done = _segment_batch(predictor, batch, prompt, args)
                written += done
                failed += len(batch) - done
                bar.update(len(batch))
    print(f"wrote {written} PNG + JSON pair(s) to {args.out}" + (f"; {failed} image(s) failed" if failed else ""))
    return 1 if failed else 0


def _segment_batch(predictor, batch: list[tuple[Path, str]], prompt, args: argparse.Namespace) -> int:
    """Segment and write one batch of (path, stem); a failing batch is retried image by image so only the bad
    image is lost. Returns how many images were written."""
    from grounded.utils.images import load_image

    good = []  # (path, stem, pixels)
    for path, stem in batch:
        try:
            good.append((path, stem, load_image(path)))
        except Exception as exc:  # noqa: BLE001  (the per-image fault boundary)
            _fault(path, exc)
    if not good:
        return 0
    try:
        results = predictor.segment_batch([image for _, _, image in good], prompt)
    except Exception as exc:  # noqa: BLE001
        if len(good) == 1:
            _fault(good[0][0], exc)
            return 0
        return sum(_segment_batch(predictor, [(path, stem)], prompt, args) for path, stem, _ in good)
    written = 0
    for (path, stem, image), dets in zip(good, results, strict=True):
        try:
            _write(path, image, dets, args, stem)
            written += 1
        except Exception as exc:  # noqa: BLE001
            _fault(path, exc)
    return written


def _write(path: Path, image, dets, args: argparse.Namespace, stem: str) -> None:
    from grounded.io.annotate import annotate
    from grounded.io.detections_json import detections_to_json, write_json

    annotate(image, dets, labels=not args.no_labels).save(args.out / f"{stem}.png")
    write_json(detections_to_json(dets, image.shape[:2], str(path)), args.out / f"{stem}.json")
    logger.info("%s: %d detections", path, len(dets))
