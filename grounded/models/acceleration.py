"""Speed settings: memory reuse, CPU kernels, reduced-precision autocast, int8, input size, threads.

Nothing here runs at import time. Two settings are on by default for models on a CPU because they keep the
maths: ``retain_memory`` (bit-identical results) and ``cpu_kernels`` (equal up to float rounding). The rest
is opt-in: without options a ``Predictor`` computes in float32 at the checkpoint's input size. Each opt-in
knob trades a measured amount of agreement with float32 for speed (``benchmarks/pipeline.py`` prints both
side by side).

On by default on a CPU (``None``; ``False`` turns each off, ``True`` forces it):

- ``retain_memory``: PyTorch allocates CPU activations with the C library's malloc. glibc serves every block
  over its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it on free, so each forward pass
  page-faults its gigabytes of activations in again: 2.2 million minor faults per SAM ViT-B encoder pass and
  3.3 million per Grounding DINO pass at 800x1200, about a third of their time on the 2-core machine behind
  the README's figures. :func:`retain_freed_memory` tells glibc (``mallopt``) to serve large blocks from its
  heap and to keep freed memory, so later passes reuse pages already mapped: the effect of running under
  jemalloc/tcmalloc (PyTorch's CPU tuning advice) without ``LD_PRELOAD``. Results are bit-identical; the
  cost is that the process keeps its high-water mark of memory. Process-wide; logged and skipped outside
  glibc (macOS, Windows, musl).
- ``cpu_kernels``: the same maths through operations that run faster on a CPU. One rewrite so far: Grounding
  DINO's multi-scale deformable attention as one weighted gather (``embedding_bag``) instead of a
  ``grid_sample`` per level + stack + weighted sum (grounded/models/deformable.py: 4x faster per call, equal to 1e-5).

Opt-in:

- ``autocast``: ``"bfloat16"`` / ``"float16"`` run matmuls and convolutions in that type under
  ``torch.autocast`` (weights stay float32; outputs are returned as float32). ``"auto"`` picks bfloat16 on a
  CPU whose instruction set has native bf16 dot products (AVX-512 BF16 or AMX, read from the CPU flags, not
  assumed) and on a CUDA GPU that supports it (else float16 there); on any other CPU it picks nothing, since
  emulated bf16 is slower than float32.
- ``quantize="int8"``: dynamic int8 quantisation of every ``nn.Linear`` (weights int8, activations quantised
  per batch), CPU only. Nearly all of Grounding DINO's and SAM's compute is in linear layers. Its layers take
  float32 activations, so with int8 ``autocast="auto"`` (as in the "fast" preset) resolves to none, and an
  explicit bf16/fp16 autocast is refused.
- ``detector_size``: Grounding DINO's input short side (800 for the released checkpoints, long side capped
  at 1333/800 of it). Smaller is faster and finds fewer small objects; a speed/quality knob, not a free win.
- ``threads``: ``torch.set_num_threads`` (process-wide).
- ``compile``: ``torch.compile`` (inductor) of each backend's ``compile_modules``: the SAM family's mask decoder
  (prompt encoder outputs -> masks), the step that runs per box batch and per click. Its many small
  element-wise ops fuse: SAM ViT-B's prompt encoder + decoder 121 -> 95 ms per click, SAM 2.1 tiny's 132 -> 93
  ms, on one AVX2 core (``benchmarks/clicks.py server --compile``; the decoder alone equal to eager within 1e-8).
  Each graph compiles on its first call (3 masks and 1 mask per prompt are two: 20-40 s each). The
  image encoders are left eager: they already run at 65-75 % of the fp32 matmul peak on an AVX2 CPU
  (``benchmarks/roofline.py``), compiling SAM 2.1's gained 5 % for 77 s of compilation, and ONNX Runtime ran
  SAM ViT-B's and SAM 2.1's no faster than this eager path with ``retain_memory`` (``benchmarks/runtimes.py``).

``PRESETS`` (grounded/config.py) bundle opt-in ones: ``"accurate"`` is the float32 default at each checkpoint's
input size; ``"fast"`` is ``autocast="auto"`` plus ``detector_size=512``. Explicit options override the
preset's. A preset means "the fast settings this backend has": each backend takes the preset settings it
supports (:func:`takes`) and skips the others, so no preset makes a backend fail. For ``"fast"``: Grounding
DINO and MM-Grounding-DINO run at 512 on the short side under ``autocast="auto"``; OWLv2, OmDet-Turbo, every
segmenter and SAM 3 keep their checkpoint's input size under ``autocast="auto"`` (checked on every backend
with bf16, tests/backends/test_combinations.py). The same setting given explicitly to a backend that cannot
take it (``detector_size`` with OWLv2) is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grounded.config import PRESETS, Acceleration
from grounded.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedAcceleration(Acceleration):
    """Speed settings after the preset: the :class:`Acceleration` fields plus ``from_preset``, the names of
    those whose value the preset gave (a backend skips such a setting when it cannot take it; an explicit one
    it cannot take is refused)."""

    from_preset: frozenset[str] = frozenset()

    @property
    def settings(self) -> Acceleration:
        """The settings alone, as a plain :class:`Acceleration`."""
        return Acceleration(**{f.name: getattr(self, f.name) for f in fields(Acceleration)})


def resolve_acceleration(preset: str | None = None, **overrides: Any) -> ResolvedAcceleration:
    """The preset's settings with every non-None override applied; unknown preset names are an error."""
    if preset is not None and preset not in PRESETS:
        raise InputError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
    base = PRESETS[preset] if preset else Acceleration()
    explicit = {k: v for k, v in overrides.items() if v is not None}
    settings = {f.name: explicit.get(f.name, getattr(base, f.name)) for f in fields(Acceleration)}
    given = frozenset(f.name for f in fields(Acceleration) if getattr(base, f.name) is not None) - set(explicit)
    return ResolvedAcceleration(**settings, from_preset=given)


def takes(backend: Any, setting: str) -> bool:
    """Whether a loaded backend takes a speed setting (an :class:`Acceleration` field name): ``detector_size``
    needs a resizable input (``set_input_size``: Grounding DINO's detectors); every backend takes the others."""
    return setting != "detector_size" or hasattr(backend, "set_input_size")


COMPILER = "inductor"  # torch.compile's backend (the tests trace with "eager": graph capture without code generation)


def compile_modules(backend: Any) -> list[str]:
    """``torch.compile`` (inductor, dynamic shapes: any number of boxes or clicks) each of the backend's
    ``compile_modules`` in place; returns their names. The first call of each compiles (tens of seconds on a CPU).
    """
    done = []
    for path in backend.compile_modules:
        module = backend.model.get_submodule(path)
        if not getattr(module, "_grounded_compiled", False):
            module.compile(dynamic=True, backend=COMPILER)
            module._grounded_compiled = True
        done.append(path)
    if not done:
        logger.info("compile: %s (%s) has no module that gains from it; left eager", type(backend).__name__,
                    backend.name)
    return done


# ------------------------------------------------------------------------------------------- detection
def cpu_flags() -> set[str]:
    """Instruction-set flags of the first CPU in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 dot products natively (AVX-512 BF16 or AMX-BF16)."""
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    try:  # no /proc/cpuinfo (macOS, Windows): ask oneDNN, which checks the same instructions
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(autocast: str | None, device: torch.device) -> torch.dtype | None:
    """The dtype to autocast to on ``device``, or None for float32 (``"auto"`` resolved by detection)."""
    if autocast is None:
        return None
    if autocast == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[autocast]
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        logger.warning("autocast=bfloat16 on a CPU without native bf16 (no avx512_bf16/amx_bf16): it is emulated "
                       "and usually slower than float32; autocast='auto' would not use it here")
    return dtype


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ------------------------------------------------------------------------------------------- memory
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_retained = False


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of unmapping it (see the module docstring).

    Sets ``M_MMAP_MAX`` to 0 (large blocks come from the heap, not from fresh mappings) and ``M_TRIM_THRESHOLD``
    to 2 GiB (free does not shrink the heap). Process-wide and idempotent. Returns True when the setting is in
    force, False where the C library is not glibc (nothing is changed there).
    """
    global _retained
    if _retained:
        return True
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # Windows: no process-wide symbol table
        libc = None
    # only glibc has gnu_get_libc_version; musl and others have no (or a no-op) mallopt
    ok = hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") \
        and libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not ok:
        logger.info("retain_memory: the C library is not glibc; the allocator is left as it is")
        return False
    _retained = True
    logger.info("retain_memory: glibc malloc keeps freed memory in the process (mmap off, trimming off)")
    return True


# ------------------------------------------------------------------------------------------- rewrites
def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` by a dynamically quantised int8 one, in place (CPU, float32 weights)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def set_detector_size(image_processor: Any, short_side: int) -> None:
    """Make a Grounding DINO image processor resize to ``short_side`` (long side capped at 1333/800 of it)."""
    image_processor.size = {"shortest_edge": short_side, "longest_edge": round(short_side * 1333 / 800)}


def apply_acceleration(acc: Acceleration, *backends: Any) -> torch.dtype | None:
    """Apply ``acc`` to loaded backends (:class:`grounded.models.base.PretrainedPair`); return the autocast dtype.

    ``detector_size`` needs a backend with ``set_input_size(short_side)`` (Grounding DINO's detectors); given
    explicitly to a predictor whose backends have none it is refused, naming them; from a preset
    (``acc.from_preset``) it is skipped there.
    """
    device = backends[0].device
    if acc.quantize == "int8":
        if device.type != "cpu" or any(b.dtype != torch.float32 for b in backends):
            raise InputError("quantize='int8' needs float32 weights on the CPU; drop --dtype/--device cuda or --quantize")
        for backend in backends:
            quantize_linear_int8(backend.model)
    if acc.detector_size is not None:
        sized = [b for b in backends if takes(b, "detector_size")]
        names = ", ".join(f"{type(b).__name__} ({b.name})" for b in backends)
        if not sized and "detector_size" not in getattr(acc, "from_preset", ()):
            raise InputError(f"detector_size (--detector-size) is not supported by {names}: only a detector with "
                             "a resizable input (Grounding DINO, MM-Grounding-DINO) takes it; drop it")
        if not sized:
            logger.info("the preset's detector_size=%d is skipped: %s keep their input size", acc.detector_size, names)
        for backend in sized:
            backend.set_input_size(acc.detector_size)
    if acc.threads is not None:
        torch.set_num_threads(acc.threads)
    if acc.retain_memory or (acc.retain_memory is None and device.type == "cpu"):
        retain_freed_memory()
    if acc.cpu_kernels or (acc.cpu_kernels is None and device.type == "cpu"):
        from grounded.models.deformable import use_gather_deformable_attention

        for backend in backends:  # models without multi-scale deformable attention are left as they are
            use_gather_deformable_attention(backend.model)
    if acc.compile:
        for backend in backends:
            compile_modules(backend)
    dtype = autocast_dtype(acc.autocast, device)
    if acc.quantize == "int8" and dtype is not None:  # int8 dynamic linear layers take float32 activations
        if acc.autocast != "auto":
            raise InputError(f"quantize='int8' runs its linear layers on float32 activations and cannot run under "
                             f"autocast={acc.autocast!r}; drop --autocast or --quantize")
        dtype = None  # "auto" (e.g. from --preset fast): int8 alone
    for backend in backends:
        backend.autocast = dtype
    logger.info("acceleration %s on %s: autocast=%s", acc, device, dtype)
    return dtype
