"""Fake backends: test doubles behind the Detector / Segmenter interfaces, with known, deterministic results.

``FakeDetector`` and ``FakeSegmenter`` need no weights; they are built backends that any
:class:`grounded.Predictor` uses as it uses real ones (padding, NMS, ``max_detections``, the same output fields).
Results depend only on the image's pixels and the ontology, so two runs over the same images give identical
results. Per image the detector draws 0-3 boxes from a generator seeded by the pixels' CRC32, and the
segmenter draws in each box one of three shapes, chosen by the box's CRC32:

- ``"box"``: the filled box (one part, no hole -> a COCO polygon);
- ``"ring"``: an ellipse with an elliptic hole (-> COCO RLE, ``iscrowd=0``);
- ``"pair"``: the box's left and right thirds (several parts -> COCO RLE).

Object counts are uniform in 0..max_objects, so about one image in four is a negative.

``FakePredictor(**options)`` is ``Predictor(detector=FakeDetector(), segmenter=FakeSegmenter(), **options)``;
``FakeConceptSegmenter`` serves both in one backend (``model=``).
The command line gets the same backends by name, as any backend without a config.json: ``FAKE_FLAGS``
(``--detector grounded.testing.fake:FakeDetector --segmenter grounded.testing.fake:FakeSegmenter``, resolved
by grounded/models/registry.py), so a child process runs the fake with no switch inside the CLI.

``delay`` (seconds per image) slows the detector down for interruption tests. ``exit_once`` (a marker file
path) injects a crash: the first image that finds no marker creates it and ends the process at once
(``os._exit``, as a kill would), so a Ray worker dies mid-batch exactly once. Built by name (command-line
runs) the detector reads them from ``GROUNDED_FAKE_DELAY`` and ``GROUNDED_FAKE_EXIT_ONCE``; neither changes
:meth:`grounded.Predictor.describe`.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.models.interfaces import ConceptSegmenter, Detector, Features, InputSize, Segmenter
from grounded.ontology import Ontology
from grounded.pipeline.predictor import Predictor

SHAPES = ("box", "ring", "pair")
FAKE_DETECTOR = "grounded.testing.fake:FakeDetector"
FAKE_SEGMENTER = "grounded.testing.fake:FakeSegmenter"
FAKE_MODEL = "grounded.testing.fake:FakeConceptSegmenter"
FAKE_FLAGS = ["--detector", FAKE_DETECTOR, "--segmenter", FAKE_SEGMENTER]


@dataclass
class FakeFeatures(Features):
    """The images themselves (RGB uint8 arrays): the fakes' "encoding"."""

    image_sizes: list[tuple[int, int]]
    images: list[np.ndarray]


def _encode(images: Sequence[np.ndarray]) -> FakeFeatures:
    return FakeFeatures([tuple(im.shape[:2]) for im in images], list(images))


def _draw(kind: str, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """One object's (H, W) bool mask of the given kind inside ``box`` (XYXY integer pixels)."""
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    if kind == "box":
        mask[y0:y1, x0:x1] = True
    elif kind == "ring":
        yy, xx = np.mgrid[:height, :width]
        cy, cx, ry, rx = y0 + bh / 2, x0 + bw / 2, bh / 2, bw / 2
        r2 = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2
        mask[(r2 <= 1.0) & (r2 >= 0.25)] = True
    else:  # two parts: left and right thirds of the box
        third = max(1, bw // 3)
        mask[y0:y1, x0 : x0 + third] = True
        mask[y0:y1, x1 - third : x1] = True
    return mask


class _Fake:
    """What the fakes share: a one-parameter module for ``device`` / ``dtype``, a name to be built by."""

    @classmethod
    def from_pretrained(cls, name: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
        return cls()

    def _init(self, name: str) -> None:
        super().__init__(torch.nn.Linear(1, 1), processor=None, name=name)  # PretrainedPair

    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """The fakes read every image at its own size."""
        return InputSize(tuple(hw), tuple(hw))


class FakeDetector(_Fake, Detector):
    """0..max_objects boxes per image, at least 4 px a side, from the pixels' CRC32 (see the module docstring)."""


    def __init__(self, delay: float | None = None, max_objects: int = 3, exit_once: str | None = None) -> None:
        self._init(FAKE_DETECTOR)
        self.delay = float(os.environ.get("GROUNDED_FAKE_DELAY", 0.0)) if delay is None else float(delay)
        self.exit_once = (os.environ.get("GROUNDED_FAKE_EXIT_ONCE") or None) if exit_once is None else exit_once
        self.max_objects = max_objects

    def encode(self, images: Sequence[np.ndarray]) -> FakeFeatures:
        return _encode(images)

    def detect(self, features: FakeFeatures, ontology: Ontology, options: Any) -> list[sv.Detections]:
        return [self._detect(image, ontology) for image in features.images]

    def _detect(self, image: np.ndarray, ontology: Ontology) -> sv.Detections:
        """One image's boxes (``xyxy`` XYXY pixels, most confident first); subclasses in tests wrap this."""
        if self.exit_once and not os.path.exists(self.exit_once):
            with open(self.exit_once, "w") as marker:
                marker.write(str(os.getpid()))
            os._exit(17)
        if self.delay:
            time.sleep(self.delay)
        height, width = image.shape[:2]
        rng = np.random.default_rng(zlib.crc32(image.tobytes()) ^ zlib.crc32(ontology.fingerprint().encode()))
        boxes, class_ids, conf, phrases = [], [], [], []
        for _ in range(int(rng.integers(self.max_objects + 1))):
            bw, bh = max(4, int(width * rng.uniform(0.2, 0.5))), max(4, int(height * rng.uniform(0.2, 0.5)))
            x0, y0 = int(rng.integers(0, max(1, width - bw))), int(rng.integers(0, max(1, height - bh)))
            boxes.append([x0, y0, min(width, x0 + bw), min(height, y0 + bh)])
            class_id = int(rng.integers(len(ontology)))
            class_ids.append(class_id)
            synonyms = ontology.classes[class_id].phrases
            phrases.append(synonyms[int(rng.integers(len(synonyms)))])
            conf.append(round(float(rng.uniform(0.3, 0.95)), 3))
        order = np.argsort(-np.asarray(conf, dtype=np.float32), kind="stable")
        return sv.Detections(
            xyxy=np.asarray([boxes[i] for i in order], dtype=np.float32).reshape(-1, 4),
            confidence=np.asarray([conf[i] for i in order], dtype=np.float32),
            class_id=np.asarray([class_ids[i] for i in order], dtype=int),
            data={"class_name": np.array([ontology.classes[class_ids[i]].name for i in order], dtype=str),
                  "phrase": np.array([phrases[i] for i in order], dtype=str)},
        )


def fake_masks(boxes_xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, 4) XYXY pixel boxes -> (N, H, W) bool: each box's shape (box, ring or pair, by the box's CRC32)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).round().astype(np.int32).reshape(-1, 4)
    masks = [_draw(SHAPES[zlib.crc32(box.tobytes()) % len(SHAPES)], box, height, width) for box in boxes]
    return np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)


class FakeSegmenter(_Fake, Segmenter):
    """:func:`fake_masks` as full-size logits (+/-10), predicted IoU 0.9."""


    def __init__(self) -> None:
        self._init(FAKE_SEGMENTER)

    def encode(self, images: Sequence[np.ndarray]) -> FakeFeatures:
        return _encode(images)

    def decode(self, features: FakeFeatures, index: int, boxes_xyxy: np.ndarray, multimask: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        masks = fake_masks(boxes_xyxy, *features.image_sizes[index])
        logits = torch.from_numpy(masks.astype(np.float32) * 20.0 - 10.0)[:, None]
        return logits, torch.full((len(masks), 1), 0.9)

    def upscale(self, features: FakeFeatures, index: int, logits: torch.Tensor, threshold: float) -> np.ndarray:
        return (logits > threshold).numpy()


class FakeConceptSegmenter(_Fake, ConceptSegmenter):
    """The fake detector's boxes with the fake segmenter's masks in one backend; tests override :meth:`_detect`
    (one image -> Detections with masks) to add masks no box gives (empty, one pixel, ...)."""


    def __init__(self, delay: float | None = None, max_objects: int = 3, exit_once: str | None = None) -> None:
        self._init(FAKE_MODEL)
        self.boxes = FakeDetector(delay, max_objects, exit_once)

    def encode(self, images: Sequence[np.ndarray]) -> FakeFeatures:
        return _encode(images)

    def segment(self, features: FakeFeatures, ontology: Ontology, options: Any) -> list[sv.Detections]:
        return [self._detect(image, ontology) for image in features.images]

    def _detect(self, image: np.ndarray, ontology: Ontology) -> sv.Detections:
        found = self.boxes._detect(image, ontology)
        found.mask = fake_masks(found.xyxy, *image.shape[:2])
        found.data["mask_score"] = np.full(len(found), 0.9, dtype=np.float32)
        return found


class FakePredictor(Predictor):
    """``Predictor(detector=FakeDetector(...), segmenter=FakeSegmenter(), **options)``; ``detector``: another
    fake detector (e.g. a test's subclass), ``model``: a concept segmenter instead (FakeConceptSegmenter)."""

    def __init__(self, delay: float | None = None, max_objects: int = 3, exit_once: str | None = None, *,
                 detector: Detector | None = None, model: ConceptSegmenter | None = None, **options: Any) -> None:
        if model is not None:
            super().__init__(model=model, **options)
        else:
            detector = detector if detector is not None else FakeDetector(delay, max_objects, exit_once)
            super().__init__(detector=detector, segmenter=FakeSegmenter(), **options)


def make_images(folder: str | os.PathLike, count: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> list[str]:
    """Write ``count`` small random RGB PNGs (H, W = ``size``) named img_00000.png, ...; return their paths."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"img_{i:05d}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
