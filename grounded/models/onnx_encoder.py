"""ONNX Runtime for the SAM family's image encoders: ``Acceleration(runtime="onnxruntime")``, ``--runtime onnxruntime``.

Why: on a CPU the image encoder is most of a segmenter's time, and ONNX Runtime's CPU kernels (fused attention
and layer norms, its own GEMM) ran them faster than eager PyTorch on this project's AVX2 machine, with the same
float32 maths (``benchmarks/runtimes.py``, side by side, 1 thread: SAM ViT-B 1.41x, SAM 2.1 hiera-tiny 1.19x,
outputs equal to ~2e-6 of their largest value). Where PyTorch is faster on a CPU (or on a GPU), leave it off.

What: the backend's ``model.get_image_embeddings(pixel_values)`` is exported by PyTorch's TorchScript exporter
(opset 17) on the first image it encodes, into ``$GROUNDED_CACHE/onnx/`` (default ``~/.cache/grounded/onnx/``)
under a name made of the model class and a hash of its config and weights, so a checkpoint is exported once
per machine (tens of seconds: SAM ViT-B ~40 s) and every later process loads the file. ONNX Runtime's CPU
execution provider runs it with all graph optimisations and as many intra-op threads as torch has. Images go
one at a time (the graph is traced at batch 1); outputs come back in the structure the model returns (a tensor,
SAM-HQ's (embeddings, [intermediate]), SAM 2's list of levels). Float32 weights on the CPU only: other devices
and dtypes, int8 and autocast are refused with the reason (:func:`use_onnx_encoders`).

Needs the onnx extra (``pip install "grounded[onnx]"``); without it the error names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from grounded.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime",)  # Acceleration.runtime
OPSET = 17


def cache_folder() -> Path:
    """Where exported encoders are kept: ``$GROUNDED_CACHE/onnx`` or ``~/.cache/grounded/onnx``."""
    root = os.environ.get("GROUNDED_CACHE") or Path.home() / ".cache" / "grounded"
    return Path(root) / "onnx"


def model_key(model: torch.nn.Module) -> str:
    """A short hash of the model's class, config and weights (names, shapes, dtypes, bytes), and of the opset and
    torch version that export it (an upgrade exports again)."""
    digest = hashlib.sha256(f"{type(model).__name__}:{OPSET}:{torch.__version__}".encode())
    config = getattr(model, "config", None)
    if config is not None:
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class _Embeddings(torch.nn.Module):
    """``model.get_image_embeddings`` as a module with flat tensor outputs (what the exporter takes)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return pytree.tree_leaves(self.model.get_image_embeddings(pixel_values))


class OnnxEncoder:
    """Callable like ``model.get_image_embeddings``: (B, 3, S, S) float32 -> the same structure, via ONNX Runtime."""

    def __init__(self, model: torch.nn.Module, name: str = "") -> None:
        self.model, self.name = model, name or type(model).__name__
        self.session: Any = None
        self.spec: Any = None  # the output structure (pytree spec), from the export's example
        self.path: Path | None = None

    def _start(self, example: torch.Tensor) -> None:
        ort = require_onnxruntime()
        folder = cache_folder()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{type(self.model).__name__}-{model_key(self.model)}.onnx"
        with torch.inference_mode():
            self.spec = pytree.tree_flatten(self.model.get_image_embeddings(example))[1]
        if not self.path.is_file():
            logger.info("exporting %s's image encoder to ONNX once (%s)", self.name, self.path)
            fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=folder)
            os.close(fd)
            try:
                with torch.inference_mode(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
                    torch.onnx.export(_Embeddings(self.model).eval(), (example,), tmp, input_names=["pixel_values"],
                                      opset_version=OPSET, dynamo=False)
                os.replace(tmp, self.path)  # whole or absent: a killed export leaves no half file under the name
            finally:
                Path(tmp).unlink(missing_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixel_values: torch.Tensor) -> Any:
        if self.session is None:
            self._start(pixel_values[:1].float())
        per_image = [self.session.run(None, {"pixel_values": pixel_values[i : i + 1].float().numpy()})
                     for i in range(pixel_values.shape[0])]
        leaves = [torch.from_numpy(np.concatenate(outs, axis=0)) for outs in zip(*per_image, strict=True)]
        return pytree.tree_unflatten(leaves, self.spec)


def require_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
        import onnxruntime
    except ImportError:
        raise ModelLoadError('runtime="onnxruntime" (--runtime onnxruntime) needs ONNX and ONNX Runtime: '
                             'pip install "grounded[onnx]", or drop --runtime') from None
    return onnxruntime


def use_onnx_encoders(backends: list[Any], autocast: torch.dtype | None, quantize: str | None) -> list[str]:
    """Give each backend that has an image encoder ONNX Runtime can run (``onnx_encoder`` slot) an
    :class:`OnnxEncoder`; returns their names. Refused (InputError): no such backend, non-CPU devices,
    non-float32 weights, autocast or int8 (ONNX Runtime runs the float32 graph)."""
    require_onnxruntime()
    targets = [b for b in backends if getattr(b, "onnx_encodable", False)]
    names = ", ".join(f"{type(b).__name__} ({b.name})" for b in backends)
    if not targets:
        raise InputError(f"runtime='onnxruntime' runs the SAM family's image encoders; {names} have none: "
                         "drop --runtime")
    for backend in targets:
        if backend.device.type != "cpu" or backend.dtype != torch.float32:
            raise InputError(f"runtime='onnxruntime' runs float32 weights on the CPU; {type(backend).__name__} is "
                             f"{str(backend.dtype).replace('torch.', '')} on {backend.device}: drop --runtime, "
                             "--dtype or --device")
    if autocast is not None or quantize is not None:
        raise InputError("runtime='onnxruntime' runs the float32 graph and cannot combine with "
                         f"{'--autocast' if autocast is not None else '--quantize'}: drop one of them")
    for backend in targets:
        backend.onnx_encoder = OnnxEncoder(backend.model, backend.name)
    return [type(b).__name__ for b in targets]
