"""Benchmark: SAM 3 with an ontology of 5 phrases, our one call against 5 standard one-phrase calls.

    python benchmarks/sam3_phrases.py --threads 2        # full-size SAM 3 (840 M params), ~15-25 min on 2 cores
    python benchmarks/sam3_phrases.py --tiny             # the same flow on a tiny SAM 3: seconds (a smoke test)

SAM 3's own API takes one phrase per pass: ``processor(images=image, text=phrase)`` + ``model(**inputs)`` +
``post_process_instance_segmentation``, so k phrases encode the image k times. Ours
(:class:`grounded.models.backends.sam3.Sam3ConceptSegmenter`): the vision encoder once, the text encoder once
for all phrases, and one batched pass of the text-conditioned rest with the image features repeated per
phrase. Printed, measured side by side in one run on one photo (``--image``, default truck.jpg, resized by
the processor to 1008 x 1008):

- ours: ``encode`` (vision encoder) + ``segment`` (5 phrases), and the same ``segment`` with 1 phrase;
- separate: the 5 standard calls (each: image processor, vision encoder, text encoder, rest, post-processing);
- the ratio separate / ours (target >= 3x) and the cost of each extra phrase, (rest of 5 - rest of 1) / 4,
  against the rest of 1 phrase (target: no more: batching adds no overhead on top of the per-phrase work).

One standard call runs first, untimed: the first pass of a 1008-px image pays one-time page faults for
gigabytes of activations (measured here: a cold vision encoder 191 s against 42-97 s for whole warm calls),
which would otherwise land on whichever way runs first. glibc keeps freed memory (grounded's CPU default,
:func:`grounded.models.acceleration.retain_freed_memory`) for both ways.
Weights are random (``Sam3Config()``, the facebook/sam3 architecture; random weights cost what real ones do);
the detections are meaningless, and the same ``--box-threshold`` keeps the post-processing work equal.
The model is built in this process (no 3.4 GB checkpoint written); ``--tiny`` builds and loads a tiny one
by path through the registry. Needs CLIP's tokenizer files (``--clip-vocab``) and the backends extra.

Measured 2026-11-30, ``--threads 2`` on a 2-core AVX-512 machine shared with other jobs (load average ~5):
ours 143.5 s (encode 79.7 + 5 phrases 63.8; 1 phrase 23.2), separate 614.0 s (110.5-130.6 s per call):
4.28x; each extra phrase 10.2 s against 23.2 s for the 1-phrase rest. Peak RSS 6.56 GiB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402

PHRASES = ["car", "wheel", "window", "person", "headlight"]


def build(args):
    """The concept segmenter: full-size random weights in process, or a tiny one saved and loaded by path."""
    from transformers import CLIPTokenizer, Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from grounded.models.backends.sam3 import Sam3ConceptSegmenter
    from grounded.models.registry import load_backend

    if args.tiny:
        from grounded.testing.tiny_segmenters import build_tiny_sam3

        folder = build_tiny_sam3(Path(tempfile.mkdtemp()) / "sam3", args.clip_vocab)
        return load_backend(str(folder), "model", torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    model = Sam3Model(Sam3Config())
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(),
                              tokenizer=CLIPTokenizer.from_pretrained(str(args.clip_vocab)))
    return Sam3ConceptSegmenter(model, processor, "Sam3Config() random weights")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@torch.inference_mode()
def separate_call(sam3, image, phrase: str, threshold: float) -> int:
    """One standard SAM 3 call (the way its own processor + model are used): the number of instances kept."""
    inputs = sam3.processor(images=image, text=phrase, return_tensors="pt")
    outputs = sam3.model(**inputs)
    kept = sam3.processor.post_process_instance_segmentation(
        outputs, threshold=threshold, mask_threshold=0.5, target_sizes=inputs["original_sizes"].tolist())[0]
    return len(kept["masks"].bool().numpy())  # masks as the bool arrays a caller uses (ours returns those)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny SAM 3 (smoke test of this script)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--image", type=Path, default=C.PHOTOS / "truck.jpg")
    parser.add_argument("--clip-vocab", type=Path, default=C.SHARED / "vocab" / "clip",
                        help="folder with CLIP's vocab.json + merges.txt")
    parser.add_argument("--box-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    for path in (args.image, args.clip_vocab / "vocab.json"):
        if not path.exists():
            print(f"skipped: {path} not present")
            return
    if args.threads:
        torch.set_num_threads(args.threads)
    from grounded.config import SegmentOptions
    from grounded.models.acceleration import retain_freed_memory
    from grounded.ontology import Ontology
    from grounded.utils.images import load_image

    image = load_image(args.image)
    sam3, build_s = timed(lambda: build(args))
    params = sum(p.numel() for p in sam3.model.parameters()) / 1e6
    print(f"SAM 3 {'tiny' if args.tiny else 'Sam3Config()'}: {params:.0f} M params, built in {build_s:.1f} s; "
          f"image {args.image.name} {image.shape[1]}x{image.shape[0]}, {torch.get_num_threads()} threads")
    options = SegmentOptions(box_threshold=args.box_threshold)
    five, one = Ontology.from_classes(PHRASES), Ontology.from_classes(PHRASES[:1])

    retained = retain_freed_memory()  # grounded's CPU default (the Predictor's), here for both ways alike
    _, warmup_s = timed(lambda: separate_call(sam3, image, PHRASES[0], args.box_threshold))
    print(f"warm-up: one standard call, untimed in the totals ({warmup_s:.1f} s); glibc keeps freed memory: "
          f"{retained}")
    features, encode_s = timed(lambda: sam3.encode([image]))
    found, rest5_s = timed(lambda: sam3.segment(features, five, options))
    _, rest1_s = timed(lambda: sam3.segment(features, one, options))
    ours = encode_s + rest5_s
    print(f"ours: encode {encode_s:.1f} s + segment 5 phrases {rest5_s:.1f} s = {ours:.1f} s "
          f"({len(found[0])} instances); segment 1 phrase {rest1_s:.1f} s")

    calls, kept = [], 0
    for phrase in PHRASES:
        n, seconds = timed(lambda phrase=phrase: separate_call(sam3, image, phrase, args.box_threshold))
        calls.append(seconds)
        kept += n
    separate = sum(calls)
    print(f"separate: 5 standard calls {separate:.1f} s ({', '.join(f'{s:.1f}' for s in calls)}; "
          f"{kept} instances)")
    extra = (rest5_s - rest1_s) / (len(PHRASES) - 1)
    ratio = separate / ours
    print(f"ratio separate / ours: {ratio:.2f}x (target >= 3x: {'pass' if ratio >= 3 else 'FAIL'})")
    print(f"each extra phrase: {extra:.1f} s vs the 1-phrase rest {rest1_s:.1f} s "
          f"(target <=: {'pass' if extra <= rest1_s else 'FAIL'})")
    print(f"peak RSS {C.peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
