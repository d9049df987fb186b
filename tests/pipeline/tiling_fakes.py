"""Fake backends that see objects drawn into the pixels, so tiled results can be checked exactly.

An object is a rectangle whose pixels hold (object id, 255, 0); every other pixel is black. The fake detector
reports, per view, the bounding box of each object id it sees (score 0.9, or 0.6 when the box touches the
view's border: a cut object is less certain); the fake segmenter's mask for a box is every object pixel
inside the box, at the resolution of the view it was given; the fake concept segmenter does both. The
detectors state their input sizes as the real ones do (Grounding DINO 800 / 1333, SAM 1024, SAM 3 1008).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import supervision as sv
import torch

from grounded.models.detections import class_thresholds, empty_detections, labelled_boxes
from grounded.models.interfaces import ConceptSegmenter, Detector, Features, InputSize, Segmenter


@dataclass
class ViewFeatures(Features):
    image_sizes: list[tuple[int, int]]
    images: list[np.ndarray]


def _processor(**size) -> SimpleNamespace:
    return SimpleNamespace(image_processor=SimpleNamespace(size=size))


class _Sized:
    """``input_size`` as the real processors compute it from their ``size`` (aspect kept unless height + width)."""

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        size, (h, w) = self.processor.image_processor.size, hw
        if "height" in size:
            return InputSize.fixed(size)
        short, long = size.get("shortest_edge"), size.get("longest_edge")
        scale = long / max(h, w) if not short else min(short / min(h, w), (long or 10**9) / max(h, w))
        resized = (max(1, round(h * scale)), max(1, round(w * scale)))
        return InputSize(resized, resized)


def objects_in(view: np.ndarray) -> dict[int, np.ndarray]:
    """Object id -> its box (XYXY) in ``view``."""
    ids = np.where(view[..., 1] == 255, view[..., 0], 0)
    boxes = {}
    for oid in np.unique(ids[ids > 0]):
        ys, xs = np.nonzero(ids == oid)
        boxes[int(oid)] = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
    return boxes


def _found(view: np.ndarray, ontology, options, with_masks: bool) -> sv.Detections:
    boxes = objects_in(view)
    if not boxes:
        return empty_detections(view.shape[:2] if with_masks else None)
    h, w = view.shape[:2]
    xyxy = np.stack(list(boxes.values()))
    cut = (xyxy[:, 0] == 0) | (xyxy[:, 1] == 0) | (xyxy[:, 2] == w) | (xyxy[:, 3] == h)
    classes = np.array([oid % len(ontology) for oid in boxes], dtype=int)
    scores = np.where(cut, 0.6, 0.9)
    keep = scores > class_thresholds(ontology, options)[0][classes]  # thresholds are the backend's to apply
    if not keep.any():
        return empty_detections(view.shape[:2] if with_masks else None)
    found = labelled_boxes(xyxy[keep], scores[keep], classes[keep],
                           [ontology.classes[c].phrases[0] for c in classes[keep]], ontology)
    if with_masks:
        found.mask = np.stack([_inside(view[..., 1] == 255, box) for box in found.xyxy])  # objects never touch
        found.data["mask_score"] = found.confidence.copy()
    return found


def _inside(pixels: np.ndarray, box: np.ndarray) -> np.ndarray:
    out = np.zeros_like(pixels)
    x0, y0, x1, y1 = (int(v) for v in box)
    out[y0:y1, x0:x1] = pixels[y0:y1, x0:x1]
    return out


class FakeDetector(_Sized, Detector):

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(1, 1), _processor(shortest_edge=800, longest_edge=1333), "fake-detector")
        self.views: list[tuple[int, int]] = []  # every view's (h, w), in order

    def encode(self, images):
        self.views.extend(im.shape[:2] for im in images)
        return ViewFeatures([im.shape[:2] for im in images], list(images))

    def detect(self, features, ontology, options):
        return [_found(view, ontology, options, with_masks=False) for view in features.images]


class FakeSegmenter(_Sized, Segmenter):
    refused_options = {}  # as SAM: text tokens would be honoured

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(1, 1), _processor(longest_edge=1024), "fake-segmenter")
        self.encoded = 0

    def encode(self, images):
        self.encoded += len(images)
        return ViewFeatures([im.shape[:2] for im in images], list(images))

    def decode(self, features, index, boxes_xyxy, multimask):
        pixels = features.images[index][..., 1] == 255
        masks = np.stack([_inside(pixels, box) for box in np.asarray(boxes_xyxy).reshape(-1, 4)])
        logits = torch.from_numpy(np.where(masks, 10.0, -10.0).astype(np.float16))[:, None]
        return logits, torch.full((len(masks), 1), 0.9)

    def upscale(self, features, index, logits, threshold):
        return (logits.float() > threshold).numpy()


class FakeConcept(_Sized, ConceptSegmenter):

    def __init__(self) -> None:
        super().__init__(torch.nn.Linear(1, 1), _processor(height=1008, width=1008), "fake-concept")

    def encode(self, images):
        return ViewFeatures([im.shape[:2] for im in images], list(images))

    def segment(self, features, ontology, options):
        return [_found(view, ontology, options, with_masks=True) for view in features.images]


def draw(hw: tuple[int, int], objects: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    """A black (H, W, 3) image with each object id's XYXY rectangle drawn as (id, 255, 0)."""
    image = np.zeros((*hw, 3), dtype=np.uint8)
    for oid, (x0, y0, x1, y1) in objects.items():
        image[y0:y1, x0:x1] = (oid, 255, 0)
    return image
