"""ONNX export of students, and inference through onnxruntime.

``export_onnx(student, "student.onnx", image_size)`` writes a graph with one input ``pixels`` float32
(B, 3, H, W) in [0, 1] (normalisation is inside) and one output ``logits`` (B, K + 1 [+ 1 boundary], h, w)
at the network's own output stride (``student(pixels, full_size=False)``: FastSeg gives H / 4; the predictor
up-samples once, straight to the image's size, which saves the cost of a full-size up-sampling in the graph);
batch, height and width are dynamic (H and W must be multiples of the student's stride; the predictor pads to
them). The class names, training image size, stride and whether the last channel is a boundary head go into
the model's metadata, so the ``.onnx`` alone is deployable: ``StudentPredictor.load("student.onnx").predict(image)``.

Parity: onnxruntime's logits match torch's within ``PARITY_ATOL`` (absolute, on logits) on CPU; the tests
check it for each architecture at two image sizes.

Uses the TorchScript exporter (``dynamo=False``): the newer exporter needs ``onnxscript``, an extra
dependency. Needs ``pip install "grounded[onnx]"`` (onnx + onnxruntime).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grounded.distill.checkpoint import FORMAT
from grounded.errors import InputError, ModelLoadError
from grounded.formats.files import atomic_path

PARITY_ATOL = 1e-3  # max |onnxruntime - torch| on logits, CPU float32
OPSET = 17


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ModelLoadError(f"{module} is not installed; ONNX export and inference need: pip install \"grounded[onnx]\"") from None


def export_onnx(student, path: str | Path, image_size: int) -> Path:  # noqa: ANN001
    """Export a :class:`~grounded.distill.students.Student` to ``path`` (see the module docstring)."""
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    student = student.to("cpu").eval()
    side = -(-min(image_size, 256) // student.stride) * student.stride
    example = torch.rand(1, 3, side, side)
    with atomic_path(path) as tmp:  # the graph is traced, then given its metadata, then renamed into place
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(
                _Native(student).eval(),
                (example,),
                str(tmp),
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "batch", 2: "height", 3: "width"},
                              "logits": {0: "batch", 2: "height", 3: "width"}},
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        meta = {"class_names": json.dumps(student.config.class_names), "image_size": str(int(image_size)),
                "stride": str(student.stride), "format": FORMAT,
                "boundary_head": str(int(student.config.boundary_head)), "tta_flip": str(int(student.config.tta_flip))}
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
    return path


class _Native(torch.nn.Module):
    """The student with logits at its own output stride (what the graph returns)."""

    def __init__(self, student) -> None:  # noqa: ANN001
        super().__init__()
        self.student = student

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.student(pixels, full_size=False)


def load_onnx(path: str | Path, threads: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """An exported student -> (run: (1, 3, H, W) float32 -> logits, {"class_names", "image_size", "stride",
    "boundary_head", "tta_flip"}).

    ``threads``: onnxruntime's intra-op threads (default: its own choice, one per physical core).
    """
    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model {str(path)!r} not found; export one with `grounded train` or export_onnx()")
    try:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(f"onnxruntime cannot load {path}: {exc}") from None
    props = session.get_modelmeta().custom_metadata_map
    if props.get("format") != FORMAT:
        raise ModelLoadError(f"{path} is not a grounded student export (no class names in its metadata)")
    meta = {"class_names": json.loads(props["class_names"]), "image_size": int(props["image_size"]),
            "stride": int(props["stride"]), "boundary_head": props.get("boundary_head") == "1",
            "tta_flip": props.get("tta_flip") == "1"}

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(["logits"], {"pixels": batch.astype(np.float32)})[0]

    return run, meta
