"""The three roles a model can play in grounded, and what each must give the pipeline.

A backend wraps one transformers model family (processor + model, :class:`grounded.models.base.PretrainedPair`)
behind one of these interfaces; :mod:`grounded.models.registry` picks the backend from the checkpoint's
``model_type`` (config.json). The pipeline (:class:`grounded.Predictor`) depends on these interfaces only.

Conventions for every role:

- Images arrive as RGB uint8 arrays ``(H, W, 3)`` (:func:`grounded.utils.images.load_image`).
- ``encode(images)`` runs everything that depends on the images alone, once; the returned features are
  reused for any number of prompts (ontologies). ``len(features)`` is the number of images.
- Boxes are **XYXY in pixels of the original image**, float32, clipped to the image.
- An ontology (:class:`grounded.ontology.Ontology`) maps phrases (synonyms) to class ids; a backend reports
  for each box the ontology class id and the phrase that produced it, exactly (no substring guessing).
- ``options`` are :class:`grounded.config.SegmentOptions`. A backend lists in ``refused_options`` the
  options it cannot honour, with the reason; the pipeline refuses a non-default value of any of them with
  a message naming the backend, never ignoring it silently.
- Thresholds (per class: :func:`grounded.models.detections.class_thresholds`) are applied by the backend;
  NMS and ``max_detections`` are applied by the pipeline, the same way for every backend.
- ``self.timer(stage)`` (a :class:`grounded.utils.timing.StageTimer` the Predictor shares) times a backend's
  stages, named ``"<role>.<stage>"`` (Grounding DINO + SAM keep the names benchmarks/pipeline.py reports).
- Images too small or too thin for a model are padded (bottom-right, black) by the Predictor before
  ``encode``; backends see and report the padded size, and the Predictor crops results back.
- ``input_size((H, W))`` says, from the backend's processor settings, how an (H, W) image reaches the model
  (:class:`InputSize`): the labeller reduces large images to no less than any loaded model sees of them
  (:mod:`grounded.label.modelview`).
- A batch may pad its images to one size and round floats otherwise than a batch of one; where results must
  not depend on the other images of a call (the Predictor, every labelling engine), images are encoded and
  prompted one at a time (:mod:`grounded.models.batching`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import supervision as sv
import torch

from grounded.config import SegmentOptions
from grounded.errors import InputError
from grounded.models.base import PretrainedPair
from grounded.ontology import Ontology


@dataclass(frozen=True)
class InputSize:
    """How a backend's processor gives one (H, W) image to its model (sizes (h, w) in pixels).

    ``resized``: the image's own pixels after the processor's resize, before any padding (the model sees the
    image at the scale h / H, w / W; aspect kept or not, as the processor does). ``padded``: the model's input
    for this image alone, after the processor's own padding (to a square, to a fixed size; = ``resized`` where
    a batch is padded to its largest image instead). Images of equal ``padded`` batch without padding one another.
    """

    resized: tuple[int, int]
    padded: tuple[int, int]

    @classmethod
    def fixed(cls, size: Any) -> InputSize:
        """A processor that resizes every image to ``size`` (``{"height": h, "width": w}``), aspect not kept."""
        hw = (int(size["height"]), int(size["width"]))
        return cls(hw, hw)


class Features(ABC):
    """What an ``encode`` call computed for a batch of B images; opaque to the pipeline beyond this."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image

    def __len__(self) -> int:
        return len(self.image_sizes)

    def single(self, index: int) -> Features:
        """Image ``index``'s features as a batch of one. Backends' features are one batch, which is not taken
        apart: they are encoded one image at a time where that matters (:mod:`grounded.models.batching`)."""
        if len(self) == 1 and index == 0:
            return self
        raise InputError(f"{type(self).__name__} of {len(self)} images is one batch: encode the images one at a "
                         "time to use them apart (grounded.models.batching.encode_each)")


class Backend(PretrainedPair, ABC):
    """What every role has: the size its processor gives the model for an image."""

    @abstractmethod
    def input_size(self, hw: tuple[int, int]) -> InputSize:
        """How an (H, W) image reaches the model, from the processor's own settings (see :class:`InputSize`)."""


class Detector(Backend):
    """Open-vocabulary detector: image features once, then ontologies -> labelled boxes.

    Per image, :meth:`detect` returns ``sv.Detections`` with ``xyxy`` (N, 4) XYXY pixels, ``confidence``
    (N,) in [0, 1], ``class_id`` (N,) ontology class ids, ``data["class_name"]`` and ``data["phrase"]`` (N,)
    str; no masks; thresholds applied, most confident first; NMS not yet applied.
    """

    role: ClassVar[str] = "detector"
    refused_options: ClassVar[dict[str, str]] = {}  # SegmentOptions field -> why this backend can't honour it

    @abstractmethod
    def encode(self, images: Sequence[np.ndarray]) -> Features:
        """Image-only work for B images (e.g. the vision backbone), reusable across ontologies."""

    @abstractmethod
    def detect(self, features: Features, ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        """Boxes for every image of ``features`` (one Detections per image, in order)."""


class Segmenter(Backend):
    """Promptable mask decoder: image embeddings once, then boxes -> masks + predicted IoU.

    ``decode`` returns low-resolution mask logits ``(N, K, h, w)`` float32 and predicted IoU ``(N, K)``,
    with K = 3 when ``multimask`` (the pipeline keeps the best by predicted IoU) else 1; ``upscale`` turns
    ``(N, h, w)`` logits into ``(N, H, W)`` bool masks at the original resolution.
    """

    role: ClassVar[str] = "segmenter"
    refused_options: ClassVar[dict[str, str]] = {  # a SAM-style segmenter that takes adapter tokens sets {}
        "text_tokens": "it takes no SAM-style sparse prompt tokens (grounded.clip adapters are trained for SAM)"}

    @abstractmethod
    def encode(self, images: Sequence[np.ndarray]) -> Features:
        """Image embeddings of B images."""

    @abstractmethod
    def decode(self, features: Features, index: int, boxes_xyxy: np.ndarray, multimask: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box prompts (N, 4) XYXY pixels on image ``index`` -> logits (N, K, h, w), IoU (N, K)."""

    @abstractmethod
    def upscale(self, features: Features, index: int, logits: torch.Tensor, threshold: float) -> np.ndarray:
        """Logits (N, h, w) of image ``index`` -> (N, H, W) bool masks at its original size."""


class ConceptSegmenter(Backend):
    """Text-promptable segmenter (SAM 3): image + ontology -> instance masks directly.

    Per image, :meth:`segment` returns ``sv.Detections`` as a Detector does, plus ``mask`` (N, H, W) bool at
    the original resolution and ``data["mask_score"]`` (N,) float32. All phrases of the ontology are served
    from one ``encode`` of the image.
    """

    role: ClassVar[str] = "model"
    refused_options: ClassVar[dict[str, str]] = {
        "text_tokens": "a concept segmenter takes no SAM-style sparse prompt tokens; it reads the text itself"}

    @abstractmethod
    def encode(self, images: Sequence[np.ndarray]) -> Features:
        """Vision encoder over B images, once."""

    @abstractmethod
    def segment(self, features: Features, ontology: Ontology, options: SegmentOptions) -> list[sv.Detections]:
        """Instances of every ontology class in every image of ``features``."""




def describe_backend(backend: Any) -> dict[str, Any]:
    """JSON-able identity of a loaded backend (for manifests): name, class and model_type."""
    return {"name": backend.name, "backend": type(backend).__name__,
            "model_type": getattr(getattr(backend.model, "config", None), "model_type", None)}
