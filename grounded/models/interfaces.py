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


@dataclass(frozen=True)
class PointPrompt:
    """Clicks on one object of one image, SAM's interactive prompt: points, optionally a box and the mask so far.

    ``points`` (P, 2) float32 XY **pixels of the original image**; ``labels`` (P,) int64, 1 foreground,
    0 background; ``box`` (4,) float32 XYXY pixels or None; ``mask_logits`` (h, w) float32 low-resolution logits
    of the previous step (one mask of :meth:`Segmenter.decode_points` ``[0, k]``: SAM's iterative refinement)
    or None. At least one point or a box. Build with :meth:`of`, which checks every field.
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None
    mask_logits: torch.Tensor | None = None

    @classmethod
    def of(cls, points: Any = (), labels: Any = (), box: Any = None, mask_logits: Any = None,
           image_hw: tuple[int, int] | None = None) -> PointPrompt:
        """A checked prompt from plain lists / arrays; InputError naming the field otherwise. With ``image_hw``
        (H, W), points and box must lie on the image."""
        try:
            pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
            lab = np.asarray(labels, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError("points must be [[x, y], ...] in pixels and labels [1, 0, ...] (numbers)") from None
        if len(lab) != len(pts):
            raise InputError(f"{len(pts)} point(s) but {len(lab)} label(s): give one label per point "
                             "(1 foreground, 0 background)")
        if not np.isin(lab, (0, 1)).all():
            raise InputError(f"labels must be 1 (foreground) or 0 (background), got {sorted(set(lab.tolist()))}")
        xyxy = None
        if box is not None:
            try:
                xyxy = np.asarray(box, dtype=np.float32).reshape(4)
            except (TypeError, ValueError):
                raise InputError("box must be [x0, y0, x1, y1] in pixels") from None
            if not np.isfinite(xyxy).all() or xyxy[2] <= xyxy[0] or xyxy[3] <= xyxy[1]:
                raise InputError(f"box {xyxy.tolist()} must be finite with x1 > x0 and y1 > y0")
        if not np.isfinite(pts).all():
            raise InputError("points must be finite numbers")
        if image_hw is not None:
            h, w = image_hw
            coords = np.concatenate([pts, xyxy.reshape(2, 2) if xyxy is not None else np.zeros((0, 2))])
            if len(coords) and ((coords < 0).any() or (coords[:, 0] > w).any() or (coords[:, 1] > h).any()):
                raise InputError(f"points and box must lie on the {w}x{h} image (pixels, x in [0, {w}], "
                                 f"y in [0, {h}])")
        if len(pts) == 0 and xyxy is None:
            raise InputError("give at least one point (a click) or a box")
        if mask_logits is not None:
            mask_logits = torch.as_tensor(mask_logits, dtype=torch.float32)
            if mask_logits.ndim != 2:
                raise InputError(f"mask_logits must be one (h, w) low-resolution mask, got shape {tuple(mask_logits.shape)}")
        return cls(pts, lab.astype(np.int64), xyxy, mask_logits)


class Segmenter(Backend):
    """Promptable mask decoder: image embeddings once, then boxes -> masks + predicted IoU.

    ``decode`` returns low-resolution mask logits ``(N, K, h, w)`` float32 and predicted IoU ``(N, K)``,
    with K = 3 when ``multimask`` (the pipeline keeps the best by predicted IoU) else 1; ``upscale`` turns
    ``(N, h, w)`` logits into ``(N, H, W)`` bool masks at the original resolution. ``decode_points`` (where
    ``takes_points``) does the same for one object's clicks (:class:`PointPrompt`).
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

    takes_points: ClassVar[bool] = False  # whether decode_points is served (the SAM family: True)

    def decode_points(self, features: Features, index: int, prompt: PointPrompt, multimask: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clicks (:class:`PointPrompt`) on one object of image ``index`` -> logits (1, K, h, w), IoU (1, K);
        only the prompt encoder and mask decoder run (the image's features are reused)."""
        raise InputError(f"the segmenter {self.name!r} ({type(self).__name__}) takes no point prompts; "
                         "choose a SAM-family segmenter (SAM, SAM-HQ, SAM 2, EdgeTAM)")

    def mask_prior(self, features: Features, index: int, mask: np.ndarray) -> torch.Tensor:
        """An existing mask (H, W) bool of image ``index`` -> low-res logits (h, w) in ``decode_points``' frame,
        the ``mask_logits`` of a fix that starts from that mask."""
        raise InputError(f"the segmenter {self.name!r} ({type(self).__name__}) takes no point prompts")


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
