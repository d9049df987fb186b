"""Run a trained student on images: ``StudentPredictor.load(path).predict(image) -> sv.Detections``.

``path`` is a training run folder, a ``student.safetensors`` (with its ``student.json``) or an exported
``student.onnx`` (run through onnxruntime; its metadata carries the class names and image size). The result
is a drop-in for the teacher's: instance masks, boxes, confidences and 0-based class ids with
``data["class_name"]`` (see :mod:`grounded.distill.instances`).

Pipeline per image (H, W): resize the long side to the training ``image_size``, pad to a multiple of the
student's stride (:func:`~grounded.distill.augment.fit_to_stride`), run (the logits come at the network's
output stride), resize the logits bilinearly once so that the un-padded part covers (H, W), crop the
padding, softmax -> probabilities (K + 1, H, W) (and the boundary head's sigmoid (H, W) when the student has
one), then instances: boundary-aware (``instances="boundary"``, the default when the student has the head)
or connected components (``instances="components"``).

Test-time flip (``tta_flip``, ``StudentConfig.tta_flip``; off by default, twice the network's cost): the padded
batch is also run mirrored; its logits are mirrored back, their class channels swapped for classes named
left/right that have a mirror class (:func:`~grounded.distill.augment.flip_map`, the table training's flips
use: ``front_left_door`` <-> ``front_right_door``), and averaged with the plain logits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import supervision as sv
import torch
from torch.nn import functional as F

from grounded.distill.augment import fit_to_stride, flip_map
from grounded.distill.instances import probs_to_detections
from grounded.errors import InputError
from grounded.models.loading import resolve_device
from grounded.utils.images import ImageInput, load_image

logger = logging.getLogger(__name__)


class StudentPredictor:
    """Pre-processing, a backend (torch module or ONNX session) and post-processing to instances.

    Args:
        run: batch (1, 3, H', W') float32 in [0, 1] -> logits (1, K + 1, H', W') float32 numpy.
        class_names: the K foreground classes.
        image_size: long side images are resized to (the training size).
        stride: the backend's input multiple.
        min_area: smallest instance kept, in pixels of the original image.
        boundary_head: the backend's last channel scores instance boundaries.
        instances: "boundary" (split touching objects with the boundary head, when there is one) or
            "components" (connected components of the class map).
        tta_flip: average with the mirrored image's logits, left/right classes swapped (see the module docstring).
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        class_names: Sequence[str],
        image_size: int,
        stride: int,
        min_area: int = 16,
        boundary_head: bool = False,
        instances: str = "boundary",
        tta_flip: bool = False,
    ) -> None:
        if instances not in ("boundary", "components"):
            raise InputError(f"instances must be 'boundary' or 'components', got {instances!r}")
        self.run, self.class_names = run, list(class_names)
        self.image_size, self.stride, self.min_area = int(image_size), int(stride), min_area
        self.boundary_head, self.instances, self.tta_flip = bool(boundary_head), instances, bool(tta_flip)
        mirror = flip_map(self.class_names)[: len(self.class_names) + 1]  # channel c <- mirror class's channel
        self.mirror = torch.cat([mirror, torch.arange(len(mirror), len(mirror) + int(self.boundary_head))])

    @classmethod
    def load(cls, path: str | Path, device: str | None = "auto", min_area: int = 16, threads: int | None = None) -> StudentPredictor:
        """A run folder / ``.safetensors`` (torch) or ``.onnx`` (onnxruntime, ``threads`` intra-op) -> predictor."""
        if Path(path).suffix == ".onnx":
            from grounded.distill.export import load_onnx

            run, meta = load_onnx(path, threads)
            return cls(run, meta["class_names"], meta["image_size"], meta["stride"], min_area, meta["boundary_head"],
                       tta_flip=meta["tta_flip"])
        from grounded.distill.checkpoint import load_student

        student, record = load_student(path)
        return cls.from_module(student, record["image_size"], device, min_area)

    @classmethod
    def from_module(cls, student, image_size: int, device: str | None = "auto", min_area: int = 16) -> StudentPredictor:  # noqa: ANN001
        """Wrap an in-memory :class:`~grounded.distill.students.Student` (put in eval mode)."""
        dev = resolve_device(device)
        student = student.to(dev).eval()

        @torch.inference_mode()
        def run(batch: np.ndarray) -> np.ndarray:
            return student(torch.from_numpy(batch).to(dev), full_size=False).float().cpu().numpy()

        return cls(run, student.config.class_names, image_size, student.stride, min_area, student.config.boundary_head,
                   tta_flip=student.config.tta_flip)

    def outputs(self, image: ImageInput) -> tuple[np.ndarray, np.ndarray | None]:
        """(class probabilities (K + 1, H, W) float32, boundary probabilities (H, W) or None) at the image's size."""
        rgb = load_image(image)
        height, width = rgb.shape[:2]
        batch, (h, w) = fit_to_stride(rgb, self.image_size, self.stride)
        logits = self.logits(batch)
        padded_h, padded_w = batch.shape[2:]  # the un-padded (h, w) part must land on (height, width)
        size = (round(padded_h * height / h), round(padded_w * width / w))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0, :, :height, :width]
        k = len(self.class_names) + 1
        boundary = logits[k].sigmoid().numpy() if self.boundary_head else None
        return logits[:k].softmax(0).numpy(), boundary

    def logits(self, batch: np.ndarray) -> torch.Tensor:
        """The backend's logits (1, C, h, w) of a padded batch (1, 3, H', W'); averaged with the mirrored batch's
        (mirrored back, left/right channels swapped) when ``tta_flip``."""
        logits = torch.from_numpy(np.ascontiguousarray(self.run(batch)))
        if not self.tta_flip:
            return logits
        mirrored = torch.from_numpy(np.ascontiguousarray(self.run(np.ascontiguousarray(batch[..., ::-1]))))
        return (logits + mirrored.flip(-1)[:, self.mirror]) / 2

    def probs(self, image: ImageInput) -> np.ndarray:
        """Class probabilities (K + 1, H, W) float32 at the image's own size."""
        return self.outputs(image)[0]

    def predict(self, image: ImageInput, instances: str | None = None) -> sv.Detections:
        """Instances of one image (see :mod:`grounded.distill.instances`); ``instances`` overrides the default."""
        probs, boundary = self.outputs(image)
        return self.detections(probs, boundary, instances)

    def detections(self, probs: np.ndarray, boundary: np.ndarray | None, instances: str | None = None) -> sv.Detections:
        """Instances from :meth:`outputs`, boundary-aware or by connected components."""
        use = boundary if (instances or self.instances) == "boundary" else None
        return probs_to_detections(probs, self.class_names, self.min_area, boundary=use)
