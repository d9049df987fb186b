"""Segment what a prompt names in one image, reusing the image's encodings for several prompts.

    python examples/segment_image.py truck.jpg "a wheel" "car . headlight ." --out out/
    python examples/segment_image.py truck.jpg "a wheel" --detector ./gdino-tiny --segmenter ./sam-vit-base
    python examples/segment_image.py truck.jpg "a wheel" --tiny     # offline demo: tiny RANDOM models

With ``--tiny`` the script builds tiny randomly initialised models, so it runs on a machine without any
weights; its boxes and masks are meaningless (random weights) and only show that the plumbing works.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import grounded
from grounded.io.annotate import annotate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("prompts", nargs="+", help='one or more prompts, e.g. "a wheel" "car . headlight ."')
    parser.add_argument("--out", type=Path, default=Path("example_out"))
    parser.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny")
    parser.add_argument("--segmenter", default="facebook/sam-vit-base")
    parser.add_argument("--tiny", action="store_true", help="build tiny random models (plumbing demo only)")
    args = parser.parse_args()

    options = {}
    if args.tiny:
        from grounded.testing.tiny import build_tiny_models

        args.detector, args.segmenter = map(str, build_tiny_models(tempfile.mkdtemp(prefix="grounded_tiny_")))
        options = {"box_threshold": 0.2, "text_threshold": 0.0}  # random weights score low
    predictor = grounded.Predictor(args.detector, args.segmenter, **options)
    image = grounded.load_image(args.image)

    start = time.perf_counter()
    predictor.set_image(image)  # both image encoders, once
    print(f"set_image: {time.perf_counter() - start:.2f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(args.prompts):
        start = time.perf_counter()
        detections = predictor.segment(prompt)  # text side + decoders only
        print(f"{prompt!r}: {len(detections)} detections in {time.perf_counter() - start:.2f} s "
              f"{sorted(set(detections.data['class_name'].tolist()))}")
        annotate(image, detections).save(args.out / f"{args.image.stem}_{i}.png")
    if args.tiny:
        print("(tiny random models: the detections above are noise, not results)")


if __name__ == "__main__":
    main()
