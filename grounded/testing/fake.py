"""A fake predictor: a test double with the Predictor's protocol and known, deterministic detections.

``FakePredictor`` needs no model. Its detections depend only on the image's pixels and the ontology, so
two runs over the same images give identical results, and tests know what to expect. Per image it draws
0-3 objects from a generator seeded by the pixels' CRC32:

- ``"box"``: a filled rectangle (one part, no hole -> a COCO polygon);
- ``"ring"``: an ellipse with an elliptic hole (-> COCO RLE, ``iscrowd=0``);
- ``"pair"``: two separate rectangles in one mask (several parts -> COCO RLE).

Object counts are uniform in 0..max_objects, so about one image in four is a negative. Protocol (see ``grounded.pipeline.predictor``)::

    predictor.set_image(image)               # path / PIL / RGB uint8 array
    predictor.segment(ontology) -> sv.Detections
    predictor.segment_batch(images, ontology) -> list[sv.Detections]   # the same, image by image
    predictor.encode(images) -> FakeEncoding; predictor.segment_encoded(encoding, ontology)  # the stateless form
    predictor.describe() -> dict

``delay`` (seconds per image) slows it down for interruption tests. ``exit_once`` (a marker file path)
injects a crash: the first image that finds no marker creates it and ends the process at once
(``os._exit``, as a kill would), so a Ray worker dies mid-batch exactly once. For command-line runs,
:func:`fake_factory_from_env` reads ``GROUNDED_FAKE_DELAY`` and ``GROUNDED_FAKE_EXIT_ONCE``; neither
changes :meth:`FakePredictor.describe`.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import supervision as sv

from grounded.errors import OrderError
from grounded.ontology import Ontology
from grounded.utils.images import ImageInput, load_image

SHAPES = ("box", "ring", "pair")


def _draw(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One object's (H, W) bool mask of the given kind, inside the image, at least a few pixels big."""
    mask = np.zeros((height, width), dtype=bool)
    bw, bh = max(4, int(width * rng.uniform(0.2, 0.5))), max(4, int(height * rng.uniform(0.2, 0.5)))
    x0, y0 = int(rng.integers(0, max(1, width - bw))), int(rng.integers(0, max(1, height - bh)))
    if kind == "box":
        mask[y0 : y0 + bh, x0 : x0 + bw] = True
    elif kind == "ring":
        yy, xx = np.mgrid[:height, :width]
        cy, cx, ry, rx = y0 + bh / 2, x0 + bw / 2, bh / 2, bw / 2
        r2 = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2
        mask[(r2 <= 1.0) & (r2 >= 0.25)] = True
    else:  # two parts: left and right thirds of the box
        third = max(1, bw // 3)
        mask[y0 : y0 + bh, x0 : x0 + third] = True
        mask[y0 : y0 + bh, x0 + bw - third : x0 + bw] = True
    return mask


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@dataclass
class FakeEncoding:
    """What FakePredictor.encode keeps: the images themselves."""

    images: list[np.ndarray]

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        return [image.shape[:2] for image in self.images]


class FakePredictor:
    """Deterministic stand-in for ``grounded.Predictor`` (see the module docstring)."""

    def __init__(self, delay: float | None = None, max_objects: int = 3, exit_once: str | None = None) -> None:
        self.delay = float(os.environ.get("GROUNDED_FAKE_DELAY", 0.0)) if delay is None else float(delay)
        self.max_objects = max_objects
        self.exit_once = exit_once
        self._image: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        return {"predictor": "FakePredictor", "version": 1, "max_objects": self.max_objects}

    def set_image(self, image: ImageInput) -> None:
        self._image = load_image(image)

    def reset_image(self) -> None:
        self._image = None

    def segment(self, prompt: Any, **options: Any) -> sv.Detections:
        """Known detections for the current image; ``class_id`` indexes ``Ontology.from_prompt(prompt)``."""
        if self._image is None:
            raise OrderError("FakePredictor.segment called before set_image(image)")
        return self._detect(self._image, Ontology.from_prompt(prompt))

    def segment_batch(self, images: list[ImageInput], prompt: Any, **options: Any) -> list[sv.Detections]:
        return self.segment_encoded(self.encode(images), prompt, **options)

    def encode(self, images: list[ImageInput]) -> FakeEncoding:
        return FakeEncoding([load_image(image) for image in images])

    def segment_encoded(self, encoding: FakeEncoding, prompt: Any, **options: Any) -> list[sv.Detections]:
        ontology = Ontology.from_prompt(prompt)
        return [self._detect(image, ontology) for image in encoding.images]

    def _detect(self, image: np.ndarray, ontology: Ontology) -> sv.Detections:
        if self.exit_once and not os.path.exists(self.exit_once):
            with open(self.exit_once, "w") as marker:
                marker.write(str(os.getpid()))
            os._exit(17)
        if self.delay:
            time.sleep(self.delay)
        height, width = image.shape[:2]
        rng = np.random.default_rng(zlib.crc32(image.tobytes()) ^ zlib.crc32(ontology.fingerprint().encode()))
        count = int(rng.integers(self.max_objects + 1))
        masks, class_ids, conf, phrases = [], [], [], []
        for _ in range(count):
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            masks.append(_draw(kind, rng, height, width))
            class_id = int(rng.integers(len(ontology)))
            class_ids.append(class_id)
            phrases.append(ontology.classes[class_id].phrases[int(rng.integers(len(ontology.classes[class_id].phrases)))])
            conf.append(round(float(rng.uniform(0.3, 0.95)), 3))
        order = np.argsort(-np.asarray(conf), kind="stable")
        if count == 0:
            return sv.Detections(
                xyxy=np.zeros((0, 4), dtype=np.float32), mask=np.zeros((0, height, width), dtype=bool),
                confidence=np.zeros(0, dtype=np.float32), class_id=np.zeros(0, dtype=int),
                data={"class_name": np.array([], dtype=str), "phrase": np.array([], dtype=str),
                      "mask_score": np.zeros(0, dtype=np.float32)},
            )
        return sv.Detections(
            xyxy=np.asarray([_box(masks[i]) for i in order], dtype=np.float32),
            mask=np.stack([masks[i] for i in order]),
            confidence=np.asarray([conf[i] for i in order], dtype=np.float32),
            class_id=np.asarray([class_ids[i] for i in order], dtype=int),
            data={
                "class_name": np.array([ontology.classes[class_ids[i]].name for i in order]),
                "phrase": np.array([phrases[i] for i in order]),
                "mask_score": np.asarray([0.9] * count, dtype=np.float32),
            },
        )


def fake_factory_from_env() -> partial:
    """A picklable factory of the FakePredictor the environment asks for (command-line tests)."""
    return partial(FakePredictor, delay=float(os.environ.get("GROUNDED_FAKE_DELAY", 0.0)),
                   exit_once=os.environ.get("GROUNDED_FAKE_EXIT_ONCE") or None)


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
