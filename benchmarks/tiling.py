"""Benchmark: tiled against untiled labelling of one 12 MP and one 50 MP image, seconds and peak RSS.

    python benchmarks/tiling.py                                   # 12 + 50 MP, full-size random weights (long)
    python benchmarks/tiling.py --sizes 12 --max-detections 10    # a shorter run
    python benchmarks/tiling.py --tiny                            # tiny models: checks the harness in a minute

Models: Grounding DINO tiny (Swin-T + BERT-base) and SAM ViT-B with random weights, built once into
``--cache-dir`` (benchmarks/_common.py; random weights cost what real ones cost). The image: a real street
photo (``gsam2_cars.jpg``; a generated one when ../shared is absent) scaled up to 4000 x 3000 (12 MP) or
8660 x 5773 (50 MP) and saved as a JPEG once.

Each (size, configuration) runs in its own process, through the labelling path (``grounded.label``'s own
``prepare`` + ``Labeller``: decode, models, masks RLE-encoded at full size one at a time, the record's text):

- **untiled**: decoded reduced to 1333 px (Grounding DINO's longest input side), masks scaled up to the full size;
- **tiled**: decoded at full size, ``TiledPredictor`` (``--tile``, default auto: 800 px slices for Grounding
  DINO, overlap 0.2, plus the whole image), masks at full resolution.

Columns: seconds for the image (decode to record text), slices, detections, peak RSS of the process (models
included) and above the loaded models. Speed and memory figures live here, never in tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402

SIZES = {12: (3000, 4000), 50: (5773, 8660)}  # megapixels -> (H, W)
PROMPT = "car . person . wheel"


def test_image(folder: Path, megapixels: int) -> Path:
    """The photo scaled up to ``megapixels`` and saved as JPEG (once)."""
    from PIL import Image

    path = folder / f"street_{megapixels}mp.jpg"
    if not path.exists():
        h, w = SIZES[megapixels]
        source = Image.fromarray(C.photos(1, ["gsam2_cars.jpg"])[0])
        source.resize((w, h), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def models(args) -> tuple[Path, Path]:
    cache = Path(args.cache_dir)
    if args.tiny:
        from grounded.testing.tiny import build_tiny_models

        folder = cache / "tiny"
        if not (folder / "detector" / "config.json").exists():
            build_tiny_models(folder, vocab_file=C.BERT_VOCAB if C.BERT_VOCAB.exists() else None)
        return folder / "detector", folder / "segmenter"
    return C.build_detector(cache / "grounding-dino-tiny"), C.build_segmenter(cache / "sam-vit-b")


def run_row(args) -> dict:
    """One configuration on one image in this process (what the parent runs as a child)."""
    from grounded import Predictor
    from grounded.config import TileOptions
    from grounded.label.engine import Labeller
    from grounded.label.runner import as_ontology
    from grounded.pipeline.tiled import TiledPredictor

    detector, segmenter = models(args)
    predictor = Predictor(str(detector), str(segmenter), max_detections=args.max_detections,
                          **({"box_threshold": 0.2, "text_threshold": 0.0} if args.tiny else {}))
    tiled = args.row == "tiled"
    tiling = TileOptions(tile=args.tile, tile_batch=args.tile_batch)
    if tiled:
        predictor = TiledPredictor(predictor, tiling)
    loaded = C.peak_rss_gib()
    image = test_image(Path(args.cache_dir), args.megapixels)
    start = time.perf_counter()
    labeller = Labeller(predictor, as_ontology(PROMPT), max_side=None if tiled else 1333)
    item = labeller.prepare(image.parent, image.name)
    _, text, _, _ = labeller.label([item])[0]
    seconds = time.perf_counter() - start
    record = json.loads(text)
    if "error" in record:
        raise RuntimeError(record["error"])
    slices = predictor.slices(item.image.shape[:2]) if tiled else None
    return {"seconds": seconds, "slices": 0 if slices is None else len(slices),
            "detections": len(record["detections"]), "peak_rss_gib": C.peak_rss_gib(),
            "above_models_gib": C.peak_rss_gib() - loaded, "hw": [record["height"], record["width"]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", choices=sorted(SIZES), default=sorted(SIZES),
                    help="image sizes in megapixels (default 12 50)")
    ap.add_argument("--rows", nargs="+", choices=["untiled", "tiled"], default=["untiled", "tiled"])
    ap.add_argument("--tile", default="auto", help="--tile of the tiled row (default auto)")
    ap.add_argument("--tile-batch", type=int, default=None, help="slices per detector call (default 1 on the CPU)")
    ap.add_argument("--max-detections", type=int, default=100)
    ap.add_argument("--tiny", action="store_true", help="tiny random models: checks the harness only")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each row's process")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: one configuration in this process, print JSON
    ap.add_argument("--megapixels", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.row:
        print(json.dumps(run_row(args)))
        return
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    models(args)  # built once, before any row
    print(f"tiling, {'tiny' if args.tiny else 'full-size'} random weights, prompt {PROMPT!r}, max_detections "
          f"{args.max_detections}, tile {args.tile}, tile_batch {args.tile_batch or 'default'}")
    print(f"{'image':<16} {'row':<9} {'slices':>6} {'dets':>5} {'seconds':>8} {'peak RSS':>9} {'above models':>13}")
    for megapixels in args.sizes:
        for row in args.rows:
            cmd = [sys.executable, __file__, "--row", row, "--megapixels", str(megapixels), "--cache-dir",
                   args.cache_dir, "--tile", args.tile, "--max-detections", str(args.max_detections),
                   *(["--tile-batch", str(args.tile_batch)] if args.tile_batch else []), *(["--tiny"] if args.tiny else []),
                   *(["--threads", str(args.threads)] if args.threads else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            label = f"{megapixels} MP"
            if proc.returncode != 0:
                print(f"{label:<16} {row:<9} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:150]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            label = f"{r['hw'][1]}x{r['hw'][0]}"
            print(f"{label:<16} {row:<9} {r['slices']:>6} {r['detections']:>5} {r['seconds']:>8.1f} "
                  f"{r['peak_rss_gib']:>7.2f}GiB {r['above_models_gib']:>11.2f}GiB", flush=True)


if __name__ == "__main__":
    main()
