"""Train a CLIP text -> SAM prompt adapter on a folder of photos, then segment a photo with text tokens.

    python examples/train_adapter.py photos/ adapter/ --classes "car, wheel"            # real models (hub/cache)
    python examples/train_adapter.py ../shared/data/images adapter/ --tiny --steps 60   # tiny random models, offline

The pipeline itself is the teacher: Grounding DINO finds and names boxes, SAM turns each box into a mask;
the adapter learns to reproduce those masks from CLIP text embeddings (with and without the boxes). SAM
and CLIP stay frozen. With ``--tiny`` every model is a tiny randomly initialised one built on the spot
(``grounded.testing``): the run exercises the whole path, but its masks mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from grounded.cli import main as cli


def tiny_models(folder: Path) -> dict[str, str]:
    """Build a tiny Grounding DINO, a prompt-responsive tiny SAM and a tiny CLIP under ``folder``."""
    from grounded.testing.tiny import build_tiny_detector
    from grounded.testing.tiny_clip import build_tiny_clip, build_tiny_prompt_sam

    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vocab"
    bert = shared / "bert-base-uncased-vocab.txt"
    return {"detector": str(build_tiny_detector(folder / "detector", bert if bert.is_file() else None)),
            "segmenter": str(build_tiny_prompt_sam(folder / "segmenter", seed=3)),
            "clip": str(build_tiny_clip(folder / "clip", shared / "clip" if (shared / "clip").is_dir() else None))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--classes", default="car, wheel")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="tiny random models built offline (plumbing only)")
    parser.add_argument("--photo", type=Path, help="photo to segment afterwards (default: the folder's first)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.tiny:
        models = tiny_models(Path(tempfile.mkdtemp(prefix="tiny_models_")))
        thresholds = ["--box-threshold", "0.2", "--text-threshold", "0.2", "--max-detections", "5"]
    else:
        models = {"detector": "IDEA-Research/grounding-dino-tiny", "segmenter": "facebook/sam-vit-base",
                  "clip": "openai/clip-vit-base-patch32"}
        thresholds = []
    model_args = [f"--{k}={v}" for k, v in models.items()]
    code = cli(["train-adapter", str(args.images), "--classes", args.classes, "--out", str(args.out),
                "--steps", str(args.steps), *model_args, *thresholds])
    if code:
        raise SystemExit(code)

    from grounded import Ontology, Predictor, load_image
    from grounded.io.annotate import annotate
    from grounded.utils.images import find_images

    photo = args.photo or find_images(args.images)[0]
    predictor = Predictor(models["detector"], models["segmenter"], adapter=str(args.out), clip=models["clip"],
                          **({"box_threshold": 0.2, "text_threshold": 0.2, "max_detections": 5} if args.tiny else {}))
    predictor.set_image(photo)
    for mode in (False, True, "only"):
        found = predictor.segment(Ontology.from_classes(args.classes), text_tokens=mode)
        areas = [int(m.sum()) for m in found.mask]
        print(f"text_tokens={mode!r}: {len(found)} masks on {photo.name}, areas {areas}")
    annotate(load_image(photo), found).save(args.out / "text_only.png")  # the last mode: text tokens alone
    print(f"wrote {args.out / 'text_only.png'}")


if __name__ == "__main__":
    main()
