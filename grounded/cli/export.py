"""``grounded export OUT --format ...``: convert a finished ``grounded label`` run to other formats.

Rebuilds the exports from OUT/records/ without running any model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grounded.cli.label import add_format_argument, parse_formats

EXAMPLES = """examples:
  grounded export labelled/ --format voc masks
  grounded export labelled/ --format yolo-seg --copy-images"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="convert a labelled run to COCO / YOLO / VOC / mask PNGs (no models)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, metavar="OUT", help="output folder of a `grounded label` run")
    add_format_argument(p, default=None)
    p.add_argument("--copy-images", action="store_true", help="copy images into YOLO/VOC/mask folders (default: links)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.label import export_run
    from grounded.label.reviews import summarise_reviews

    formats = parse_formats(args.formats, [])
    stats = export_run(args.out, formats, copy_images=args.copy_images, progress=True)
    print(f"exported {stats.labelled} images ({stats.empty} empty, {len(stats.errors)} errors, "
          f"{stats.missing} not labelled yet) to " + ", ".join(str(args.out / f) for f in formats))
    reviews = summarise_reviews(args.out)  # also into summary.json
    if reviews["review_files"]:
        print("reviews applied: " + ", ".join(f"{reviews[k]} {k}" for k in ("accepted", "rejected", "added", "fixed",
                                                                              "relabelled", "candidates")))
    return 0
