"""Small-object AP with real weights: tiled against untiled labelling, scored against a COCO ground truth.

    python benchmarks/tiling_ap.py --images visdrone/images --annotations visdrone/instances.json \\
        --detector IDEA-Research/grounding-dino-tiny --segmenter facebook/sam-vit-base --limit 100
    python benchmarks/tiling_ap.py ... --tile 640 --tile-overlap 0.25     # other slices
    python benchmarks/tiling_ap.py ... --model facebook/sam3              # SAM 3 instead

For each configuration (**untiled**: ``grounded label``'s default, images larger than 1333 px given to the
models reduced; **tiled**: ``--tile``), ``grounded.label`` labels the images of the annotation file (the first
``--limit``), prompted with its category names ("_" read as a space), into ``--out/<configuration>/``; then
pycocotools' COCOeval scores the records (boxes, and masks when the ground truth has segmentations) against
the annotations: AP, AP50, AP small / medium / large (COCO's areas: small < 32 x 32 px, large > 96 x 96) and
AR@100 small. Resumable: run it again and finished images are not labelled again. Needs the real weights
(any checkpoint ``grounded`` loads); ``--tiny`` runs the tiny random models instead, to check the harness
(its AP is meaningless). Aerial and shelf datasets with COCO files (VisDrone, SKU-110K, xView converted)
are where tiling matters.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

STATS = ("AP", "AP50", "AP75", "AP small", "AP medium", "AP large")  # COCOeval.stats[0:6]; [9] is AR small


def label_run(args, images: list[Path], names: list[str], out: Path, tiling) -> None:
    import grounded
    from grounded.ontology import Ontology

    teacher = {"model": args.model} if args.model else {"detector": args.detector, "segmenter": args.segmenter}
    if args.tiny:
        from grounded.testing.tiny import build_tiny_models

        det, seg = build_tiny_models(out.parent / "tiny-models")
        teacher = {"detector": str(det), "segmenter": str(seg), "box_threshold": 0.2, "text_threshold": 0.0}
    grounded.label(images, Ontology.from_classes(names), out, formats=["coco"], split=(1.0,), preview=0,
                   tiling=tiling, max_detections=args.max_detections, **teacher)


def score(annotations: Path, images: list[dict], relatives: list[str], out: Path, with_masks: bool) -> dict[str, dict]:
    """COCOeval of the run's records (``relatives``: each image's record name) against the ground truth:
    {iou type: {stat: value}}."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from grounded.label.records import read_record

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotations))
    category_ids = sorted(truth.getCatIds())
    found = []
    for image, relative in zip(images, relatives, strict=True):
        record = read_record(out, relative)
        for item in (record or {}).get("detections", []):
            x1, y1, x2, y2 = item["bbox_xyxy"]
            found.append({"image_id": image["id"], "category_id": category_ids[item["class_id"]], "score": item["confidence"],
                          "bbox": [x1, y1, x2 - x1, y2 - y1], **({"segmentation": item["mask"]} if "mask" in item else {})})
    result = {}
    for kind in ("bbox", "segm") if with_masks else ("bbox",):
        if not found:
            result[kind] = dict.fromkeys((*STATS, "AR small"), 0.0)
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(truth, truth.loadRes(found), iouType=kind)
            evaluator.params.imgIds = [image["id"] for image in images]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = evaluator.stats
        result[kind] = {**{name: float(stats[i]) for i, name in enumerate(STATS)}, "AR small": float(stats[9])}
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder the annotation's file_name values are under")
    ap.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON (the ground truth)")
    ap.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny")
    ap.add_argument("--segmenter", default="facebook/sam-vit-base")
    ap.add_argument("--model", default=None, help="a concept segmenter (facebook/sam3) instead of the two")
    ap.add_argument("--tile", default="auto", help="--tile of the tiled configuration (default auto)")
    ap.add_argument("--tile-overlap", type=float, default=0.2)
    ap.add_argument("--max-detections", type=int, default=300, help="per image (dense scenes hold hundreds)")
    ap.add_argument("--limit", type=int, default=None, help="the first N images of the annotation file")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "grounded-tiling-ap")
    ap.add_argument("--tiny", action="store_true", help="tiny random models: checks the harness only")
    args = ap.parse_args(argv)

    from grounded.config import TileOptions

    truth = json.loads(args.annotations.read_text())
    images = sorted(truth["images"], key=lambda im: im["id"])[: args.limit]
    names = [c["name"].replace("_", " ") for c in sorted(truth["categories"], key=lambda c: c["id"])]
    with_masks = any(a.get("segmentation") for a in truth["annotations"])
    paths = [Path(os.path.abspath(args.images / image["file_name"])) for image in images]
    root = Path(os.path.commonpath([p.parent for p in paths]))  # grounded.label's root for a list of files
    relatives = [p.relative_to(root).as_posix() for p in paths]
    configurations = {"untiled": None, "tiled": TileOptions(tile=args.tile, tile_overlap=args.tile_overlap)}
    print(f"{len(images)} images of {args.annotations}, {len(names)} classes; "
          f"{'tiny models' if args.tiny else args.model or f'{args.detector} + {args.segmenter}'}")
    rows = {}
    for name, tiling in configurations.items():
        label_run(args, paths, names, args.out / name, tiling)
        rows[name] = score(args.annotations, images, relatives, args.out / name, with_masks)
    for kind in rows["untiled"]:
        print(f"\n{kind:<8} " + " ".join(f"{stat:>10}" for stat in (*STATS, "AR small")))
        for name, result in rows.items():
            print(f"{name:<8} " + " ".join(f"{result[kind][stat]:>10.3f}" for stat in (*STATS, "AR small")))


if __name__ == "__main__":
    main()
