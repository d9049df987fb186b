"""Helpers shared by the benchmark programs: full-size random-weight models, photos, memory, medians.

Full-size architectures are built from their default configs with random weights (no download: these
machines have no hub access). Random weights cost exactly what real weights cost, so timings hold; only
the detections themselves are meaningless. The folders are written once with ``save_pretrained`` and then
loaded through :class:`grounded.Predictor` by path, as a user's checkpoint would be.
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BERT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
PHOTOS = SHARED / "images"

# name -> (SamVisionConfig overrides); vit-b is SamConfig()'s default
SAM_SIZES = {
    "vit-b": {},
    "vit-l": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
              "global_attn_indexes": [5, 11, 17, 23]},
    "vit-h": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
              "global_attn_indexes": [7, 15, 23, 31]},
}
# name -> (Swin overrides, d_model): "tiny" is GroundingDinoConfig()'s default (Swin-T + BERT-base)
DINO_SIZES = {
    "tiny": {},
    "base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12,
             "image_size": 384},
}


def build_detector(folder: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save a full-size Grounding DINO (random weights) with its processor; reuse the folder if present."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    from grounded.testing.tiny import bert_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = bert_tokenizer(BERT_VOCAB if BERT_VOCAB.exists() else None, folder)
    config = GroundingDinoConfig()
    if DINO_SIZES[size]:
        backbone = SwinConfig(**{**config.backbone_config.to_dict(), **DINO_SIZES[size]})
        config = GroundingDinoConfig(backbone_config=backbone)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    with torch.no_grad():  # random features give logits of std ~16: every score saturates at 1.0 and the top-k
        for norm in (model.model.decoder.layer_norm, model.model.enc_output_norm):  # is a tie-break. Scale
            norm.weight.mul_(1 / 16)  # the two norms that feed the class logits so scores spread as trained
            norm.bias.mul_(1 / 16)  # ones do (same cost)
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(), tokenizer=tokenizer)
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_segmenter(folder: Path, size: str = "vit-b", seed: int = 0) -> Path:
    """Save a full-size SAM (random weights) with its processor; reuse the folder if present."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor, SamVisionConfig

    folder.mkdir(parents=True, exist_ok=True)
    config = SamConfig(vision_config=SamVisionConfig(**SAM_SIZES[size]).to_dict())
    torch.manual_seed(seed)
    model = SamModel(config).eval()
    with torch.no_grad():  # SamVisionConfig's initializer_range is 1e-10: embeddings ~1e-19, nothing to compare
        for name, param in model.vision_encoder.named_parameters():
            if param.dim() > 1 and "rel_pos" not in name:
                param.normal_(0.0, 0.02)
    model.save_pretrained(folder)
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(folder)
    return folder


PREFERRED = ("truck.jpg", "cat_dog.jpeg", "gsam2_cars.jpg", "groceries.jpg")  # first in line; then the rest


def photos(n: int, names: list[str] | None = None, seed: int = 0) -> list[np.ndarray]:
    """``n`` real photos (RGB uint8) from ../shared/data/images (cycled), or generated ones when absent."""
    from grounded.utils.images import load_image

    names = list(names or PREFERRED)
    paths = sorted(PHOTOS.glob("*.jp*g"), key=lambda p: (names.index(p.name) if p.name in names else 99, p.name)) \
        if PHOTOS.exists() else []
    if paths:
        return [load_image(p) for p in (paths * n)[:n]]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):  # smooth colour fields with blocks, 480x640: something for the models to look at
        img = np.zeros((480, 640, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        for _ in range(6):
            y, x = rng.integers(0, 400), rng.integers(0, 560)
            img[y : y + 80, x : x + 80] = rng.integers(0, 255, 3, dtype=np.uint8)
        out.append(img)
    return out


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far, GiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def current_rss_gib() -> float:
    """Resident set size now, GiB (from /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return peak_rss_gib()


def heap_in_use_gib() -> float | None:
    """Bytes malloc has handed out and not had back (glibc ``mallinfo2``: ``uordblks + hblkhd``), GiB.

    Unlike RSS this leaves out freed memory the allocator keeps for reuse (``retain_memory``), so it shows
    whether the pipeline itself holds more after each image. None outside glibc 2.33+.
    """
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = Mallinfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**30


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after one warm-up call (kernel choice, allocation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------- agreement
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of XYXY boxes (N, 4) x (M, 4) -> (N, M)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def agreement(ref: dict, got: dict) -> dict[str, float]:
    """How far ``got`` detections agree with reference (float32) ones on one image.

    Each reference detection is matched greedily (most confident first) to the unmatched ``got`` box of
    highest IoU. Returns mean box IoU over reference detections (unmatched count 0), mean mask IoU over
    matched pairs and the fraction of matched pairs with the same class id. Inputs: dicts with ``xyxy``
    (N, 4), ``mask`` (N, H, W) bool and ``class_id`` (N,).
    """
    n = len(ref["xyxy"])
    if n == 0 or len(got["xyxy"]) == 0:
        return {"box_iou": float(n == len(got["xyxy"])), "mask_iou": float("nan"), "label_match": float("nan")}
    ious = box_iou(ref["xyxy"], got["xyxy"])
    used: set[int] = set()
    box, mask, label = [], [], []
    for i in range(n):
        order = [j for j in np.argsort(-ious[i]) if j not in used]
        if not order or ious[i, order[0]] <= 0:
            box.append(0.0)
            continue
        j = order[0]
        used.add(j)
        box.append(ious[i, j])
        a, b = ref["mask"][i], got["mask"][j]
        mask.append((a & b).sum() / max((a | b).sum(), 1))
        label.append(float(ref["class_id"][i] == got["class_id"][j]))
    return {"box_iou": float(np.mean(box)), "mask_iou": float(np.mean(mask)) if mask else float("nan"),
            "label_match": float(np.mean(label)) if label else float("nan")}
