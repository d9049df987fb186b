"""Benchmark: each image encoder under each CPU runtime, side by side in one run.

    python benchmarks/runtimes.py                                  # SAM ViT-B + SAM 2.1 tiny, every runtime
    python benchmarks/runtimes.py --rows sam-vit-b --runtimes eager onnxruntime --threads 1
    python benchmarks/runtimes.py --tiny                           # tiny models: checks the harness only

The question it answers (the roofline issue): which runtime runs each encoder fastest on *this* CPU. Rows are the
image encoders of the segmenters (full-size architectures of the released checkpoints, random weights: they
cost what real weights cost; built once by ``benchmarks/segmenters.py`` into ``--cache-dir`` and loaded by path).
The encoder is the model's ``get_image_embeddings(pixel_values)`` on one photo's pixels (pre-processing is not
timed: it is the same for every runtime). Runtimes:

- **eager**: PyTorch as grounded runs it by default (fp32, ``torch.inference_mode``, grounded's CPU defaults:
  ``retain_memory`` keeps freed memory mapped, which alone saves SAM ViT-B's encoder millions of page faults;
  process-wide, so every row runs with it);
- **compile**: ``torch.compile`` (inductor, CPU); the compilation's seconds are printed apart;
- **onnxruntime**: the encoder exported by the TorchScript exporter (opset 17), run by ONNX Runtime's CPU
  execution provider with every graph optimisation; export + session seconds printed apart;
- **onnxruntime-int8**: that graph dynamically quantised by ``onnxruntime.quantization.quantize_dynamic`` (int8
  weights, activations quantised per call).

Each runtime gets ``--threads`` intra-op threads. Figures: median seconds of ``--repeats`` calls after a warm-up
(``_common.median_seconds``), the ratio to eager, and the agreement with eager on the first output (largest
absolute difference over the largest absolute value, and cosine similarity). The CPU, threads and load average
are printed. Runtimes that cannot run a row (a missing extra, an export that fails) are reported, not skipped
silently.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402
from _report import _cpu_name  # noqa: E402

RUNTIMES = ("eager", "compile", "onnxruntime", "onnxruntime-int8")
PUBLISHED = {"sam-vit-b": "facebook/sam-vit-base", "sam2.1-hiera-tiny": "facebook/sam2.1-hiera-tiny"}  # row -> name
ROWS = tuple(PUBLISHED)


class Encoder(torch.nn.Module):
    """``model.get_image_embeddings(pixel_values)`` as a module with tensor outputs (export needs one)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.get_image_embeddings(pixel_values)
        return tuple(out) if isinstance(out, (list, tuple)) else (out,)


def load_row(name: str, cache: Path, tiny: bool) -> tuple[Encoder, torch.Tensor]:
    """The row's encoder module and one photo's pixel values (1, 3, S, S)."""
    from grounded.models.acceleration import apply_acceleration, resolve_acceleration
    from grounded.models.registry import load_backend

    if tiny:
        from grounded.testing.tiny_published import build_published

        folder = cache / f"tiny-{name}"
        if not (folder / "config.json").exists():
            build_published(PUBLISHED[name], folder)
    else:
        import segmenters as S

        folder = S.checkpoint(name, cache)
    backend = load_backend(str(folder), "segmenter", torch.device("cpu"), torch.float32)
    apply_acceleration(resolve_acceleration(), backend)  # grounded's CPU defaults (retain_memory: no page faults)
    pixels = backend.processor(images=C.photos(1)[0], return_tensors="pt")["pixel_values"]
    return Encoder(backend.model.eval()), pixels


def as_runner(runtime: str, encoder: Encoder, pixels: torch.Tensor, threads: int, scratch: Path,
              ) -> tuple[Callable[[], list[np.ndarray]], float]:
    """(a call returning the outputs as arrays, seconds spent preparing the runtime)."""
    started = time.perf_counter()
    if runtime in ("eager", "compile"):
        module = torch.compile(encoder) if runtime == "compile" else encoder

        def run() -> list[np.ndarray]:
            with torch.inference_mode():
                return [t.numpy() for t in module(pixels)]

        if runtime == "compile":
            run()  # the compilation happens on the first call
        return run, time.perf_counter() - started
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # errors only (not the shape-merge warnings of every session)
    path = scratch / "encoder.onnx"
    if not path.exists():
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(encoder, (pixels,), str(path), input_names=["pixel_values"], opset_version=17,
                              dynamo=False)
    if runtime == "onnxruntime-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized, root = scratch / "encoder.int8.onnx", logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser warns on the root logger for every tensor it leaves in fp32
        try:
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"pixel_values": pixels.numpy()}
    return (lambda: session.run(None, feed)), time.perf_counter() - started


def agreement(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(max |got - ref| / max |ref|, cosine similarity) of two outputs."""
    ref, got = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    cos = float(ref @ got / max(np.linalg.norm(ref) * np.linalg.norm(got), 1e-12))
    return rel, cos


def run_row(name: str, runtimes: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    encoder, pixels = load_row(name, Path(args.cache_dir), args.tiny)
    results, reference = [], None
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as scratch:
        for runtime in ["eager"] + [r for r in runtimes if r != "eager"]:
            try:
                run, prepare_s = as_runner(runtime, encoder, pixels, args.threads, Path(scratch))
                seconds = C.median_seconds(run, args.repeats)
                first = run()[0]
            except Exception as exc:  # noqa: BLE001  (reported in the table: a runtime that cannot run the row)
                results.append({"row": name, "runtime": runtime, "error": f"{type(exc).__name__}: {exc}"[:160]})
                continue
            reference = first if reference is None else reference
            rel, cos = agreement(reference, first)
            results.append({"row": name, "runtime": runtime, "s": seconds, "prepare_s": prepare_s, "rel": rel,
                            "cos": cos})
            print(results[-1], file=sys.stderr, flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    ap.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny models: checks the harness only")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    results = [r for name in args.rows for r in run_row(name, args.runtimes, args)]
    eager = {r["row"]: r["s"] for r in results if r["runtime"] == "eager" and "s" in r}
    print(f"\n{'tiny' if args.tiny else 'full-size'} encoders, {_cpu_name()}, {args.threads} thread(s), "
          f"{args.repeats} repeats; load average at the end {os.getloadavg()[0]:.2f}\n")
    print("| encoder | runtime | median s | vs eager | prepare s | max diff / max | cosine |\n|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['row']} | {r['runtime']} | error: {r['error']} | | | | |")
            continue
        print(f"| {r['row']} | {r['runtime']} | {r['s']:.3f} | {eager[r['row']] / r['s']:.2f}x | {r['prepare_s']:.1f} | "
              f"{r['rel']:.1e} | {r['cos']:.6f} |")


if __name__ == "__main__":
    main()
