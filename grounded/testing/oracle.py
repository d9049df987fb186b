"""The click protocol of interactive segmentation (NoC) and a deterministic oracle segmenter to run it offline.

**NoC protocol** (as RITM / SAM evaluate clicks): the simulated annotator compares the current mask with the
ground truth and clicks at the point farthest inside the largest error region (:func:`next_click`: the maximum
of the distance transform of the false negatives, or of the false positives, whichever is deeper; the image
border counts as boundary); a false-negative point is a foreground click (label 1), a false-positive one a
background click (0). :func:`click_curve` repeats this up to ``max_clicks`` times and returns the IoU after each
click; :func:`noc` is the number of clicks needed to reach an IoU (NoC@85, NoC@90; ``max_clicks`` when never).

**Oracle segmenter** (:class:`OracleSegmenter`, a :class:`~grounded.models.interfaces.Segmenter` that takes point
prompts): it knows the ground-truth masks of each image (keyed by its pixels) and answers like a fair but
imperfect model, deterministically: the object is the ground-truth instance that best fills the box when a
box is given, else the one under the first foreground click (the smallest, where parts overlap); it starts
from the prior (``mask_logits`` > 0) when given, else from the object drawn on a ``block``-pixel grid (a block
is in when most of it is); then each click fixes, within ``radius`` pixels of it, the connected error region
it lies in. A click already right changes nothing, so
re-sending all clicks with the previous answer as prior (the page's and SAM's way) gives the same mask.
:class:`ClicksOnlyPredictor` holds it (or any segmenter) where a server expects a predictor.

benchmarks/clicks.py runs the same protocol with a real SAM checkpoint and prints NoC@85 / NoC@90.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from grounded.errors import InputError
from grounded.models.interfaces import Features, InputSize, PointPrompt, Segmenter
from grounded.utils.masks import masks_iou

LOGIT = 10.0  # the oracle's logits: +LOGIT inside its mask, -LOGIT outside


def pixel_key(image: np.ndarray) -> str:
    """The oracle's key of an image: sha256 of its RGB pixels and shape."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks (0.0 when both are empty)."""
    return float(masks_iou(a[None], b[None])[0, 0])


def next_click(target: np.ndarray, predicted: np.ndarray) -> tuple[tuple[int, int], int]:
    """((x, y), label) of the NoC protocol's next click on ``predicted`` against ``target`` (both (H, W) bool)."""
    depths = []
    for error in (target & ~predicted, predicted & ~target):  # false negatives, then false positives
        depth = ndimage.distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
        depths.append(depth)
    label = 1 if depths[0].max() >= depths[1].max() else 0
    depth = depths[0] if label else depths[1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)  # the first deepest point, row-major
    return (int(x), int(y)), label


def click_curve(click: Callable[[list[list[float]], list[int]], np.ndarray], target: np.ndarray,
                max_clicks: int = 20, stop_iou: float | None = None, start: np.ndarray | None = None) -> list[float]:
    """Run the protocol on one object: ``click(points, labels)`` (all clicks so far) -> the new mask (H, W) bool.
    ``start``: the mask before the first click (a detection being fixed; default none). Returns the IoU after
    each click; stops early once ``stop_iou`` is reached."""
    predicted = np.zeros_like(target, dtype=bool) if start is None else start
    points: list[list[float]] = []
    labels: list[int] = []
    ious: list[float] = []
    for _ in range(max_clicks):
        (x, y), label = next_click(target, predicted)
        points.append([float(x), float(y)])
        labels.append(label)
        predicted = click(points, labels)
        ious.append(mask_iou(predicted, target))
        if stop_iou is not None and ious[-1] >= stop_iou:
            break
    return ious


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Clicks needed to reach ``threshold`` IoU (``max_clicks`` when never reached)."""
    return next((i + 1 for i, iou in enumerate(ious) if iou >= threshold), max_clicks)


@dataclass
class OracleFeatures(Features):
    image_sizes: list[tuple[int, int]]
    keys: list[str]  # pixel_key of each image


class OracleSegmenter(Segmenter):
    """See the module docstring. ``truth``: pixel_key(image) -> its ground-truth masks [(H, W) bool, ...]."""

    model_types = ("oracle",)
    refused_options = Segmenter.refused_options
    takes_points = True

    def __init__(self, truth: dict[str, list[np.ndarray]], block: int = 32, radius: int = 32) -> None:
        super().__init__(torch.nn.Linear(1, 1), None, "oracle")
        self.truth, self.block, self.radius = truth, block, radius

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """The oracle reads every image at its own size."""
        return InputSize(tuple(hw), tuple(hw))

    def encode(self, images: Sequence[np.ndarray]) -> OracleFeatures:
        keys = [pixel_key(image) for image in images]
        for key in keys:
            if key not in self.truth:
                raise InputError("the oracle segmenter has no ground truth for this image")
        return OracleFeatures([tuple(image.shape[:2]) for image in images], keys)

    def _coarse(self, mask: np.ndarray) -> np.ndarray:
        h, w = mask.shape
        b = self.block
        padded = np.pad(mask, ((0, -h % b), (0, -w % b)))
        cells = padded.reshape(padded.shape[0] // b, b, padded.shape[1] // b, b).mean(axis=(1, 3)) > 0.5
        return np.repeat(np.repeat(cells, b, axis=0), b, axis=1)[:h, :w]

    def _object(self, features: OracleFeatures, index: int, prompt: PointPrompt) -> np.ndarray:
        """The instance a prompt means: the one that best fills its box, else the smallest under its first
        foreground click (parts overlap), else none."""
        masks = self.truth[features.keys[index]]
        h, w = features.image_sizes[index]
        if prompt.box is not None and masks:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box)
            box = np.zeros((h, w), dtype=bool)
            box[y0:y1, x0:x1] = True
            return max(masks, key=lambda m: mask_iou(m, box))
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            if label == 1:
                inside = [m for m in masks if m[min(int(y), h - 1), min(int(x), w - 1)]]
                return min(inside, key=lambda m: int(m.sum())) if inside else np.zeros((h, w), dtype=bool)
        return np.zeros((h, w), dtype=bool)

    def predict(self, features: OracleFeatures, index: int, prompt: PointPrompt) -> np.ndarray:
        """The oracle's mask (H, W) bool for one object's prompt."""
        target = self._object(features, index, prompt)
        mask = (prompt.mask_logits.numpy() > 0) if prompt.mask_logits is not None else self._coarse(target)
        yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            px, py = min(int(x), mask.shape[1] - 1), min(int(y), mask.shape[0] - 1)
            error = mask != target
            if not error[py, px]:
                continue  # this click is already right
            regions, _ = ndimage.label(error)
            fix = (regions == regions[py, px]) & ((yy - py) ** 2 + (xx - px) ** 2 <= self.radius**2)
            mask = (mask | fix) if label == 1 else (mask & ~fix)
        return mask

    def decode_points(self, features: OracleFeatures, index: int, prompt: PointPrompt, multimask: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.predict(features, index, prompt)
        k = 3 if multimask else 1
        logits = torch.as_tensor(np.where(mask, LOGIT, -LOGIT), dtype=torch.float32)[None, None].repeat(1, k, 1, 1)
        return logits, torch.full((1, k), mask_iou(mask, self._object(features, index, prompt)))

    def decode(self, features: OracleFeatures, index: int, boxes_xyxy: np.ndarray, multimask: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        answers = [self.decode_points(features, index, PointPrompt.of(box=box), multimask) for box in boxes_xyxy]
        return torch.cat([a[0] for a in answers]), torch.cat([a[1] for a in answers])

    def upscale(self, features: OracleFeatures, index: int, logits: torch.Tensor, threshold: float) -> np.ndarray:
        return (logits > threshold).numpy()

    def mask_prior(self, features: OracleFeatures, index: int, mask: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.where(mask, LOGIT, -LOGIT), dtype=torch.float32)


class ClicksOnlyPredictor:
    """Where a server expects a predictor: a segmenter alone (the oracle, or a real one for benchmarks/clicks.py);
    clicks only (no text prompts)."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter, self.detector, self.model = segmenter, None, None

    def backends(self) -> list[tuple[str, Any]]:
        return [("segmenter", self.segmenter)]

    def encode(self, images: Sequence[np.ndarray]) -> Any:
        from grounded.pipeline.predictor import ImageEncoding

        return ImageEncoding([tuple(im.shape[:2]) for im in images], segmenter=self.segmenter.encode(images))

    def segment_encoded(self, encoding: Any, prompt: Any, **options: Any) -> list:
        raise InputError("this server answers clicks only (a segmenter without a detector); it finds nothing by text")
