"""Benchmark: every promptable segmenter (boxes -> masks), full-size random weights, stage by stage.

    python benchmarks/segmenters.py --quick          # 1 photo x 2 repeats per row
    python benchmarks/segmenters.py                  # 3 photos x 2 repeats per row
    python benchmarks/segmenters.py --rows sam2.1-hiera-tiny edgetam --threads 2

Rows (``SEGMENTERS``; the architectures of the named Hugging Face checkpoints, random weights, which cost
what real ones cost): SAM ViT-B, SAM-HQ ViT-B, SAM 2.1 hiera-tiny and hiera-small, EdgeTAM (RepViT-M1 via
timm). Each is saved once to ``--cache-dir`` with ``save_pretrained`` and loaded by path through the
registry, then run in its own subprocess (its peak RSS is its own) through the ``Segmenter`` interface:

- encode: processor + image encoder of one photo (``../shared/data/images``; generated ones when absent);
- decode: prompt encoder + mask decoder on 8 boxes of that photo in one call;
- upscale: the 8 low-resolution masks to the photo's size (the processor's ``post_process_masks``);
- s/img: the three together. Medians over photos x repeats (the first repeat includes one-time warm-up).

SAM 2 / EdgeTAM need the backends extra (torchvision, timm); rows that cannot load are reported and skipped.
``SEGMENTERS`` maps row name -> (Hugging Face name it stands for, builder of the folder) for other scripts.

Measured 2026-11-30, ``--quick --threads 2`` on a 2-core AVX-512 machine shared with other jobs (load
average 3-5, so rows measured minutes apart are not comparable to better than ~2x; SAM-HQ's ViT-B is SAM's):
encode / decode 8 / upscale / s/img / peak RSS: SAM ViT-B 22.88 / 1.930 / 0.158 / 24.97 s / 2.88 GiB;
SAM-HQ ViT-B 46.71 / 6.296 / 0.147 / 53.15 s / 2.96 GiB; SAM 2.1 hiera-tiny 9.23 / 2.463 / 0.103 / 11.79 s /
1.61 GiB; hiera-small 7.39 / 1.575 / 0.079 / 9.05 s / 1.64 GiB; EdgeTAM 6.08 / 2.205 / 0.103 / 8.39 s / 1.49 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402


def _save(folder: Path, model, processor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(folder)
    model.eval().save_pretrained(folder)
    return folder


def _sam_vit_init(model) -> None:
    """SAM's vision initializer_range is 1e-10 (features ~0): give the ViT weights a trained model's scale."""
    with torch.no_grad():
        for name, param in model.vision_encoder.named_parameters():
            if param.dim() > 1 and "rel_pos" not in name:
                param.normal_(0.0, 0.02)


def build_sam_hq(folder: Path) -> Path:
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor, SamImageProcessorPil

    torch.manual_seed(0)
    model = SamHQModel(SamHQConfig())  # ViT-B: syscv-community/sam-hq-vit-base
    _sam_vit_init(model)
    return _save(folder, model, SamHQProcessor(image_processor=SamImageProcessorPil()))


def _build_sam2(folder: Path, hiera: dict) -> Path:
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    torch.manual_seed(0)
    vision = {"backbone_config": {"model_type": "sam2_hiera_det_model", **hiera}}
    model = Sam2Model(Sam2Config(vision_config=vision))
    return _save(folder, model, Sam2Processor(image_processor=Sam2ImageProcessor()))


def build_edgetam(folder: Path) -> Path:
    from transformers import EdgeTamConfig, EdgeTamModel, Sam2ImageProcessor, Sam2Processor, TimmWrapperConfig

    # EdgeTamConfig()'s default backbone names its architecture under a misspelt key and so builds timm's
    # resnet50; name RepViT-M1 (EdgeTAM's) explicitly. Its channels (48, 96, 192, 384) match the neck's.
    backbone = TimmWrapperConfig(architecture="repvit_m1", do_pooling=False, num_labels=0,
                                 model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
    torch.manual_seed(0)
    model = EdgeTamModel(EdgeTamConfig(vision_config={"backbone_config": backbone}))
    return _save(folder, model, Sam2Processor(image_processor=Sam2ImageProcessor()))


# row name -> (the Hugging Face checkpoint whose architecture it is, builder of a full-size random-weight folder)
SEGMENTERS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "sam-vit-b": ("facebook/sam-vit-base", lambda folder: C.build_segmenter(folder, "vit-b")),
    "sam-hq-vit-b": ("syscv-community/sam-hq-vit-base", build_sam_hq),
    "sam2.1-hiera-tiny": ("facebook/sam2.1-hiera-tiny", lambda folder: _build_sam2(folder, {})),  # Sam2Config()
    "sam2.1-hiera-small": ("facebook/sam2.1-hiera-small", lambda folder: _build_sam2(
        folder, {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]})),
    "edgetam": ("yonigozlan/EdgeTAM-hf", build_edgetam),
}


def checkpoint(name: str, cache: Path) -> Path:
    folder = cache / name
    return folder if (folder / "config.json").exists() else SEGMENTERS[name][1](folder)


def eight_boxes(h: int, w: int) -> np.ndarray:
    """8 boxes (XYXY pixels) of varied size and place, the same for every row."""
    rng = np.random.default_rng(0)
    x0, y0 = rng.uniform(0, 0.6, 8) * w, rng.uniform(0, 0.6, 8) * h
    bw, bh = rng.uniform(0.1, 0.4, 8) * w, rng.uniform(0.1, 0.4, 8) * h
    return np.stack([x0, y0, np.minimum(x0 + bw, w), np.minimum(y0 + bh, h)], axis=1).astype(np.float32)


def run_row(folder: Path, n_photos: int, repeats: int) -> dict:
    """In this process: load the segmenter by path, time its stages on each photo ``repeats`` times."""
    from grounded.models.registry import load_backend

    start = time.perf_counter()
    segmenter = load_backend(str(folder), "segmenter", torch.device("cpu"), torch.float32)
    load_s = time.perf_counter() - start
    stages: dict[str, list[float]] = {"encode": [], "decode": [], "upscale": [], "s/img": []}
    for image in C.photos(n_photos):
        boxes = eight_boxes(*image.shape[:2])
        for _ in range(repeats):
            t0 = time.perf_counter()
            features = segmenter.encode([image])
            t1 = time.perf_counter()
            logits, iou = segmenter.decode(features, 0, boxes, False)
            t2 = time.perf_counter()
            masks = segmenter.upscale(features, 0, logits[:, 0], 0.0)
            t3 = time.perf_counter()
            assert masks.shape == (8, *image.shape[:2])
            for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                stages[key].append(seconds)
    params = sum(p.numel() for p in segmenter.model.parameters()) / 1e6
    return {"params_m": params, "load_s": load_s, "peak_rss_gib": C.peak_rss_gib(), "n": len(stages["encode"]),
            **{key: C.median(values) for key, values in stages.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 photo x 2 repeats per row")
    ap.add_argument("--photos", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", nargs="+", choices=list(SEGMENTERS), default=list(SEGMENTERS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each row's process")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    ap.add_argument("--images", type=Path, default=C.PHOTOS, help="folder of photos (default ../shared/data/images)")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row in this process, print JSON
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    C.PHOTOS = args.images  # where C.photos looks
    n_photos = 1 if args.quick else args.photos
    if args.row:
        print(json.dumps(run_row(checkpoint(args.row, Path(args.cache_dir)), n_photos, args.repeats)))
        return
    source = "photos from " + str(args.images) if args.images.exists() else "generated 480x640 images"
    print(f"segmenters, full-size random weights: {n_photos} image(s) ({source}) x {args.repeats} repeats, "
          f"{args.threads or torch.get_num_threads()} threads; medians in seconds")
    print(f"{'row':<20} {'as':<34} {'params':>7} {'encode':>7} {'decode 8':>9} {'upscale':>8} {'s/img':>7} "
          f"{'peak RSS':>9}")
    for name in args.rows:
        cmd = [sys.executable, __file__, "--row", name, "--cache-dir", args.cache_dir, "--photos", str(n_photos),
               "--repeats", str(args.repeats), "--images", str(args.images)] + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name:<20} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:150]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:<20} {SEGMENTERS[name][0]:<34} {r['params_m']:>6.1f}M {r['encode']:>7.2f} {r['decode']:>9.3f} "
              f"{r['upscale']:>8.3f} {r['s/img']:>7.2f} {r['peak_rss_gib']:>7.2f}GiB")


if __name__ == "__main__":
    main()
