"""Benchmark: each model backend on its own, full-size architecture with random weights, stage by stage.

    python benchmarks/backends.py --quick              # 1 timed repeat per row
    python benchmarks/backends.py                      # 3 timed repeats per row, medians
    python benchmarks/backends.py --rows owlv2-base,omdet-turbo --repeats 5 --image photo.jpg

Rows (``ROWS``, one :class:`Row` each; other roles add theirs to the list): the detectors Grounding DINO tiny
(Swin-T + BERT-base, 800 px short side), MM-Grounding-DINO tiny (same size), OWLv2 base (ViT-B/16 at
960 x 960, CLIP text tower) and OmDet-Turbo (timm Swin-T at 640 x 640, CLIP text tower), each built from its
default config as the released checkpoint's architecture, with random weights: they cost what real weights
cost, and the detections are meaningless (so none are shown). The processor is the one ``AutoProcessor``
gives for such a checkpoint here (saved and reloaded). Each backend gets the CPU defaults a ``Predictor``
applies (``apply_acceleration``: ``retain_memory`` and ``cpu_kernels``) and runs on ``--image``, by default
../shared/data/images/truck.jpg (the benchmark stops when it is absent).

Each row runs in its own process (its peak RSS is its own): build, one untimed warm-up (first-call costs),
then ``--repeats`` timed runs of its stages; printed figures are medians. Detector stages: ``encode`` (image
only, once per image: the part reused across ontologies) and ``detect`` (a 3-class ontology against the
cached features); ``s/img`` is their sum, what one image with one ontology costs. Compare figures only
within one run: the machine's load is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _report import _cpu_name  # noqa: E402

PHOTO = C.PHOTOS / "truck.jpg"
CLIP_VOCAB = C.SHARED / "vocab" / "clip"
PROMPT = ["truck", "wheel", "window"]  # the detect stage's ontology


@dataclass(frozen=True)
class Row:
    """One benchmark row: how to build the backend and what one timed repeat of its stages runs."""

    name: str  # printed, and the value --rows selects by
    model_type: str  # registry key (grounded/models/registry.py) of the backend class
    architecture: str  # printed: what full-size architecture the row builds
    build: Callable[[Path], tuple[Any, Any]]  # scratch folder -> (model with random weights, processor)
    stages: Callable[[Any, np.ndarray], dict[str, float]]  # (backend, image) -> {stage: seconds}


# -------------------------------------------------------------------------------------------- builders
def _reloaded(processor: Any, scratch: Path) -> Any:
    """The processor as ``AutoProcessor`` loads a checkpoint's processor files here (torchvision or PIL)."""
    from transformers import AutoProcessor

    folder = scratch / "processor"
    processor.save_pretrained(folder)
    return AutoProcessor.from_pretrained(folder)


def _bert(scratch: Path):
    from grounded.testing.tiny import bert_tokenizer

    return bert_tokenizer(C.BERT_VOCAB if C.BERT_VOCAB.is_file() else None, scratch)


def _clip(scratch: Path, max_length: int):
    from grounded.testing.tiny_detectors import clip_tokenizer

    return clip_tokenizer(CLIP_VOCAB if (CLIP_VOCAB / "vocab.json").is_file() else None, scratch, max_length)


def build_grounding_dino(scratch: Path, mm: bool = False) -> tuple[Any, Any]:
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        MMGroundingDinoConfig,
        MMGroundingDinoForObjectDetection,
    )

    model = MMGroundingDinoForObjectDetection(MMGroundingDinoConfig()) if mm else \
        GroundingDinoForObjectDetection(GroundingDinoConfig())
    processor = GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(),
                                       tokenizer=_bert(scratch))
    return model, _reloaded(processor, scratch)


def build_owlv2(scratch: Path) -> tuple[Any, Any]:
    """google/owlv2-base-patch16-ensemble's architecture: ViT-B/16 at 960 px (Owlv2Config() says 768)."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    model = Owlv2ForObjectDetection(Owlv2Config(vision_config={"image_size": 960, "patch_size": 16}))
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": 960, "width": 960}),
                               tokenizer=_clip(scratch, 16))
    return model, _reloaded(processor, scratch)


def build_omdet_turbo(scratch: Path) -> tuple[Any, Any]:
    """omlab/omdet-turbo-swin-tiny-hf's architecture: OmDetTurboConfig() (timm Swin-T, 640 px)."""
    from transformers import (
        DetrImageProcessorPil,
        OmDetTurboConfig,
        OmDetTurboForObjectDetection,
        OmDetTurboProcessor,
    )

    model = OmDetTurboForObjectDetection(OmDetTurboConfig())
    processor = OmDetTurboProcessor(image_processor=DetrImageProcessorPil(size={"height": 640, "width": 640}),
                                    tokenizer=_clip(scratch, 77))
    return model, _reloaded(processor, scratch)


# ---------------------------------------------------------------------------------------------- stages
def detector_stages(detector: Any, image: np.ndarray) -> dict[str, float]:
    """encode (image only) then detect (a 3-class ontology on the cached features), seconds each."""
    from grounded.config import SegmentOptions
    from grounded.ontology import Ontology

    ontology = Ontology.from_prompt(PROMPT)
    t0 = time.perf_counter()
    features = detector.encode([image])
    t1 = time.perf_counter()
    detector.detect(features, ontology, SegmentOptions())
    return {"encode": t1 - t0, "detect": time.perf_counter() - t1}


ROWS: list[Row] = [
    Row("grounding-dino-tiny", "grounding-dino", "Swin-T + BERT-base, 800 px", build_grounding_dino,
        detector_stages),
    Row("mm-grounding-dino-tiny", "mm-grounding-dino", "Swin-T + BERT-base, 800 px",
        lambda scratch: build_grounding_dino(scratch, mm=True), detector_stages),
    Row("owlv2-base", "owlv2", "ViT-B/16 + CLIP text, 960 px", build_owlv2, detector_stages),
    Row("omdet-turbo", "omdet-turbo", "timm Swin-T + CLIP text, 640 px", build_omdet_turbo, detector_stages),
]


# ---------------------------------------------------------------------------------------------- worker
def worker(name: str, repeats: int, out: Path, photo: Path) -> None:
    """Build one row, warm it up, time ``repeats`` runs; write {stages, peak_rss, build_s} as JSON."""
    import torch

    from grounded.config import Acceleration
    from grounded.models.acceleration import apply_acceleration
    from grounded.models.registry import backend_class
    from grounded.utils.images import load_image

    row = next(r for r in ROWS if r.name == name)
    cls = backend_class(row.model_type, role_of(row))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(0)
        model, processor = row.build(Path(scratch))
    backend = cls(model.eval(), processor, f"{row.name} (random weights)")
    apply_acceleration(Acceleration(), backend)  # the CPU defaults a Predictor applies
    build_s = time.perf_counter() - t0
    image = load_image(photo)
    row.stages(backend, image)  # warm-up
    runs = [row.stages(backend, image) for _ in range(repeats)]
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    out.write_text(json.dumps({"stages": {k: [r[k] for r in runs] for k in runs[0]}, "build_s": build_s,
                               "peak_rss": C.peak_rss_gib(), "params_m": params_m}))


def role_of(row: Row) -> str:
    from grounded.models.registry import roles_of

    return roles_of(row.model_type)[0]


def run_row(row: Row, repeats: int, tmp: Path, photo: Path) -> dict | None:
    out = tmp / f"{row.name}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(C.ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, "--worker", row.name, "--repeats", str(repeats),
                           "--out", str(out), "--image", str(photo)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# {row.name}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.read_text())


def render(results: dict[str, dict], rows: list[Row], repeats: int) -> str:
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    head = ["row", "architecture", "params M", *[f"{s} s" for s in stages], "s/img", "peak RSS GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        if row.name not in results:
            continue
        r = results[row.name]
        med = {s: C.median(v) for s, v in r["stages"].items()}
        cells = [row.name, row.architecture, f"{r['params_m']:.0f}",
                 *[f"{med[s]:.2f}" if s in med else "" for s in stages],
                 f"{C.median([sum(run) for run in zip(*r['stages'].values(), strict=True)]):.2f}",
                 f"{r['peak_rss']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"# medians of {repeats} timed run(s) after one warm-up; s/img = median over runs of the "
                 "sum of a run's stages")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 timed repeat per row")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per row (default 3)")
    parser.add_argument("--rows", default="", help=f"comma-separated row names (default all: "
                                                   f"{','.join(r.name for r in ROWS)})")
    parser.add_argument("--image", type=Path, default=PHOTO, help=f"the photo (default {PHOTO})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    if args.worker:
        worker(args.worker, repeats, Path(args.out), args.image)
        return
    if not args.image.is_file():
        print(f"# {args.image} not found: pass --image PHOTO (default ../shared/data/images/truck.jpg); "
              "nothing run")
        return
    names = [n for n in args.rows.split(",") if n] or [r.name for r in ROWS]
    unknown = sorted(set(names) - {r.name for r in ROWS})
    if unknown:
        parser.error(f"unknown row(s) {unknown}; rows: {[r.name for r in ROWS]}")
    rows = [r for r in ROWS if r.name in names]
    import torch

    print(f"# grounded backends benchmark: CPU {_cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average at start {os.getloadavg()[0]:.1f}")
    print(f"# image {args.image.name}; detect ontology {PROMPT}; each row in its own process ...")
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            t = time.perf_counter()
            result = run_row(row, repeats, Path(tmp), args.image)
            if result is not None:
                results[row.name] = result
                print(f"# {row.name}: done in {time.perf_counter() - t:.0f} s "
                      f"(build {result['build_s']:.1f} s)")
    print(render(results, rows, repeats))
    print(f"# total {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f} "
          f"(1 min; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
