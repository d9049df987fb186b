"""Benchmark: the teacher's encoders against this machine's own matrix-unit peak (a roofline as one table).

    python benchmarks/roofline.py                          # peaks + every encoder row, fp32 and int8 (+ bf16
                                                           #   where the CPU has native bf16)
    python benchmarks/roofline.py --quick                  # 1 timed repeat per stage
    python benchmarks/roofline.py --paths fp32 bf16        # bf16 also where it is emulated (AVX2: slow)
    python benchmarks/roofline.py --rows sam-vit-b --sam3  # one row, plus SAM 3's vision encoder (slow on a CPU)

**Peaks** (what the machine's matrix unit does at best, with the kernels each path uses, 2-D products of
``--size``², after a warm-up, medians): fp32 ``torch.matmul``; bf16 ``torch.matmul`` (AMX / AVX-512 BF16 where
the CPU has them, emulated otherwise); int8 the kernel grounded's ``quantize="int8"`` runs: a dynamically
quantised ``nn.Linear`` (fbgemm; activations quantised per call, included), and ``torch._int_mm`` (int8 x int8
-> int32) for reference.

**Encoders** (full-size architectures of the released checkpoints, random weights: they cost what real weights
cost): each row is loaded through the registry the way a user's checkpoint is, gets the CPU settings a
``Predictor`` applies for the path (``apply_acceleration``: fp32 = the defaults; int8 = ``quantize="int8"``; bf16 =
``autocast="bfloat16"``), and runs its stages on one photo through the backend interface, so pre-processing is
included (a few tens of ms): SAM ViT-B, SAM-HQ ViT-B, SAM 2.1 hiera-tiny and EdgeTAM ``encode`` (the image
encoder); Grounding DINO tiny ``encode`` (Swin-T backbone) and ``detect`` (BERT + the text-image fusion encoder
+ decoder, 3 classes); OWLv2 base ``encode`` (ViT-B/16 at 960 px) and ``detect``; SAM 3 ``encode`` with ``--sam3``.

FLOPs are counted once per stage in fp32 by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls,
convolutions and attention: CPU's fused attention kernel is added to its table, since PyTorch counts only the GPU
ones); an int8 or bf16 run does the same arithmetic. ``TFLOPS`` = FLOPs / median seconds; ``% peak`` = that over
the path's own peak measured in this run. Element-wise work (norms, GELU, softmax, layout copies) counts no FLOPs,
so a stage's fraction also shows how much of its time is spent outside the matrix unit.

Figures compare only within one run; the CPU, its bf16/AMX flags, threads and the load average are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402
from _report import _cpu_name  # noqa: E402

PATHS = ("fp32", "int8", "bf16")
PROMPT = ["truck", "wheel", "window"]  # the detect stage's ontology, as benchmarks/backends.py


# ----------------------------------------------------------------------------------------------- peaks


def peaks(size: int, repeats: int, native_bf16: bool) -> dict[str, dict[str, float]]:
    """{kernel: {"s", "tflops"[, "size"]}} for square products of ``size`` (``size`` where smaller): fp32, bf16
    (1024² where emulated), int8 (the dynamic linear) and torch._int_mm (1024² at most)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        out["fp32"] = {"s": C.median_seconds(lambda: a @ b, repeats)}
        side = size if native_bf16 else min(size, 1024)  # emulated bf16 runs ~100x below fp32: keep it short
        a16, b16 = a[:side, :side].bfloat16(), b[:side, :side].bfloat16()
        out["bf16"] = {"s": C.median_seconds(lambda: a16 @ b16, repeats), "size": side}
        linear = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(size, size, bias=False)),
                                                        {torch.nn.Linear}, dtype=torch.qint8)
        out["int8"] = {"s": C.median_seconds(lambda: linear(a), repeats)}
        small = min(size, 1024)  # int8 x int8 -> int32; slow where the CPU has no VNNI / AMX-int8 kernel for it
        ai = torch.randint(-128, 128, (small, small), dtype=torch.int8, generator=gen)
        out["int_mm"] = {"s": C.median_seconds(lambda: torch._int_mm(ai, ai), repeats), "size": small}
    for row in out.values():
        row["tflops"] = 2.0 * row.get("size", size) ** 3 / row["s"] / 1e12
    return out


# --------------------------------------------------------------------------------------------- encoders
def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call, with CPU's fused attention counted (PyTorch's table knows only the GPU kernels)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_sdpa(query, key, value, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        return sdpa_flop_count(query, key, value)

    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return float(counter.get_total_flops())


def _detector_stages(backend: Any, image: np.ndarray) -> dict[str, Callable[[], Any]]:
    from grounded.config import SegmentOptions
    from grounded.ontology import Ontology

    ontology = Ontology.from_prompt(PROMPT)
    features = backend.encode([image])
    return {"encode": lambda: backend.encode([image]),
            "detect": lambda: backend.detect(features, ontology, SegmentOptions())}


def _segmenter_stages(backend: Any, image: np.ndarray) -> dict[str, Callable[[], Any]]:
    return {"encode": lambda: backend.encode([image])}


def _detector_row(name: str, cache: Path) -> Any:
    """A detector of benchmarks/backends.py's rows, built with random weights and wrapped in its backend."""
    import backends as B

    from grounded.models.registry import backend_class

    row = next(r for r in B.ROWS if r.name == name)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        torch.manual_seed(0)
        model, processor = row.build(Path(scratch))
    return backend_class(row.model_type, B.role_of(row))(model.eval(), processor, f"{name} (random weights)")


def _segmenter_row(name: str, cache: Path) -> Any:
    import segmenters as S

    from grounded.models.registry import load_backend

    return load_backend(str(S.checkpoint(name, cache)), "segmenter", torch.device("cpu"), torch.float32)


def _sam3_row(cache: Path) -> Any:
    from transformers import CLIPTokenizer, Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from grounded.models.backends.sam3 import Sam3ConceptSegmenter

    vocab = C.SHARED / "vocab" / "clip"
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(vocab) if vocab.exists() else None
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer)
    return Sam3ConceptSegmenter(Sam3Model(Sam3Config()).eval(), processor, "Sam3Config() random weights")


# name -> (architecture printed, builder (cache -> backend), stages (backend, image) -> {stage: call})
ROWS: dict[str, tuple[str, Callable[[Path], Any], Callable[[Any, np.ndarray], dict[str, Callable[[], Any]]]]] = {
    "sam-vit-b": ("SAM ViT-B, 1024 px", lambda c: _segmenter_row("sam-vit-b", c), _segmenter_stages),
    "sam-hq-vit-b": ("SAM-HQ ViT-B, 1024 px", lambda c: _segmenter_row("sam-hq-vit-b", c), _segmenter_stages),
    "sam2.1-hiera-tiny": ("SAM 2.1 hiera-tiny, 1024 px", lambda c: _segmenter_row("sam2.1-hiera-tiny", c),
                          _segmenter_stages),
    "edgetam": ("EdgeTAM RepViT-M1, 1024 px", lambda c: _segmenter_row("edgetam", c), _segmenter_stages),
    "grounding-dino-tiny": ("Swin-T + BERT-base, 800 px", lambda c: _detector_row("grounding-dino-tiny", c),
                            _detector_stages),
    "owlv2-base": ("ViT-B/16 + CLIP text, 960 px", lambda c: _detector_row("owlv2-base", c), _detector_stages),
}
SAM3 = ("sam3", "SAM 3 (Sam3Config()), 1008 px", _sam3_row, _segmenter_stages)


def run_row(name: str, build: Callable[[Path], Any], stages: Callable, paths: list[str], image: np.ndarray,
            repeats: int, cache: Path) -> list[dict[str, Any]]:
    """Every (stage, path) of one row: FLOPs counted once in fp32, then seconds per path (a fresh backend each)."""
    from grounded.config import Acceleration
    from grounded.models.acceleration import apply_acceleration

    settings = {"fp32": Acceleration(), "int8": Acceleration(quantize="int8"),
                "bf16": Acceleration(autocast="bfloat16")}
    results: list[dict[str, Any]] = []
    flops: dict[str, float] = {}
    for path in paths:
        try:
            backend = build(cache)
        except (ImportError, OSError, ValueError) as err:  # an extra this environment lacks
            print(f"  {name}: skipped ({type(err).__name__}: {err})", flush=True)
            return results
        apply_acceleration(settings[path], backend)
        calls = stages(backend, image)
        if not flops:
            flops = {stage: count_flops(call) for stage, call in calls.items()}
        with torch.inference_mode():
            for stage, call in calls.items():
                seconds = C.median_seconds(call, repeats)
                results.append({"row": name, "stage": stage, "path": path, "gflop": flops[stage] / 1e9, "s": seconds})
                print(f"  {name} {stage} {path}: {seconds:.2f} s ({flops[stage] / 1e9:.0f} GFLOP)", flush=True)
        del backend, calls
    return results


def render(peak: dict, rows: list[dict], architectures: dict[str, str], header: str) -> str:
    lines = [header, "", "| kernel | s | TFLOPS |", "|---|---|---|"]
    for name, p in peak.items():
        size = p.get("size")
        label = f"{name} ({size}²)" if size else name
        lines.append(f"| {label} | {p['s']:.3f} | {p['tflops']:.3f} |")
    lines += ["", "| encoder | stage | GFLOP | path | s | TFLOPS | % of path peak | vs fp32 |",
              "|---|---|---|---|---|---|---|---|"]
    fp32 = {(r["row"], r["stage"]): r["s"] for r in rows if r["path"] == "fp32"}
    for r in rows:
        tflops = r["gflop"] / 1e3 / r["s"]
        ratio = fp32.get((r["row"], r["stage"]))
        speedup = f"{ratio / r['s']:.2f}x" if ratio else "-"
        lines.append(f"| {r['row']} ({architectures[r['row']]}) | {r['stage']} | {r['gflop']:.0f} | {r['path']} | "
                     f"{r['s']:.2f} | {tflops:.3f} | {100 * tflops / peak[r['path']]['tflops']:.0f} % | {speedup} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from grounded.models.acceleration import cpu_flags, cpu_has_native_bf16

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=None,
                    help="default: fp32 int8, and bf16 where the CPU has native bf16")
    ap.add_argument("--sam3", action="store_true", help="add SAM 3's vision encoder (minutes per image on a CPU)")
    ap.add_argument("--size", type=int, default=4096, help="side of the peak's square matmul")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 timed repeat")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    native_bf16 = cpu_has_native_bf16()
    paths = args.paths or ["fp32", "int8"] + (["bf16"] if native_bf16 else [])
    paths = ["fp32"] + [p for p in paths if p != "fp32"]  # FLOPs are counted on the fp32 model; the ratios need it
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512_bf16", "avx512_vnni", "amx", "avx_vnni")))
    load0 = os.getloadavg()[0]
    header = (f"CPU: {_cpu_name()}; bf16/int8 units: {', '.join(flags) or 'none (AVX2 at most)'}; "
              f"{torch.get_num_threads()} threads; torch {torch.__version__}; capability "
              f"{torch.backends.cpu.get_cpu_capability()}")
    print(header, flush=True)
    peak = peaks(args.size, repeats, native_bf16)
    print("peaks:", {k: round(v["tflops"], 3) for k, v in peak.items()}, flush=True)
    image = C.photos(1)[0]
    selected = [(name, *ROWS[name]) for name in args.rows] + ([SAM3] if args.sam3 else [])
    rows: list[dict[str, Any]] = []
    for name, _, build, stages in selected:
        rows += run_row(name, build, stages, paths, image, repeats, cache)
    architectures = {name: arch for name, arch, _, _ in selected}
    loads = f"load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    print("\n" + render(peak, rows, architectures, f"{header}; {loads}; image {image.shape[1]}x{image.shape[0]}"))
    if args.json:
        args.json.write_text(json.dumps({"header": header, "load": loads, "peaks": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
