"""CLIP around a Predictor: stages that take what a :class:`grounded.Predictor` computed and give detections.

When its options use CLIP (``text_tokens``, ``verify``) or it was given ``clip=`` / ``adapter=``, the Predictor
builds one ``ClipStage`` (the adapter loads and is checked against the SAM at once, CLIP on first use:
grounded/clip/runtime.py) and hands it its output at three points:

- :meth:`ClipStage.text_only` (``text_tokens="only"``): the segmenter's image embeddings of an encoding ->
  one mask per ontology class from the adapter's text tokens alone, instead of any detector;
- :meth:`ClipStage.decoder` (``text_tokens=True``): the mask decoder for the detector's boxes, each box
  prompted with the adapter's tokens for its phrase too (same ``(N, K, h, w)`` logits, ``(N, K)`` IoU);
- :meth:`ClipStage.verified` (``verify="clip"``): one image's final detections -> CLIP's check of each label
  on its masked crop (grounded/clip/verify.py).

:meth:`ClipStage.identity` is what :meth:`grounded.Predictor.describe` records of CLIP and the adapter (the
adapter by its weights' sha256, not its path). With the defaults (no clip, no adapter, ``text_tokens=False``,
``verify=None``) no stage is built and results are exactly those without CLIP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import supervision as sv

from grounded.config import SegmentOptions
from grounded.ontology import Ontology

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from grounded.clip.runtime import ClipTools
    from grounded.models.interfaces import Features


class ClipStage:
    """CLIP (+ a text-prompt adapter) for one Predictor; see the module docstring.

    ``predictor``: the :class:`grounded.Predictor` it serves (its segmenter, device, timer and option checks).
    """

    def __init__(self, predictor: Any, clip: Any = None, adapter: Any = None) -> None:
        from grounded.clip.runtime import ClipTools

        self.clip, self.adapter = clip, adapter
        if adapter is not None:  # an adapter for another SAM, or a segmenter without SAM's tokens, is refused now
            predictor.check_options(SegmentOptions(text_tokens=True))
        self.tools: ClipTools = ClipTools(predictor.segmenter, clip, adapter, device=predictor.device,
                                          local_files_only=predictor.local_files_only)
        self.timer = predictor.timer

    def check(self, options: SegmentOptions) -> None:
        """Refuse text tokens without an adapter before any work (never fall back to boxes alone)."""
        self.tools.check(options.text_tokens)

    def identity(self) -> dict[str, Any]:
        """CLIP / adapter settings for ``describe()``: CLIP by name (or class), the adapter by its weights' sha256."""
        out: dict[str, Any] = {}
        if self.clip is not None:
            out["clip"] = self.clip if isinstance(self.clip, str) else type(self.clip).__name__
        if self.adapter is not None:
            if isinstance(self.adapter, (str, Path)):
                from grounded.clip.adapter import read_adapter_record

                weights = read_adapter_record(self.adapter)[1]
                out["adapter"] = hashlib.sha256(weights.read_bytes()).hexdigest()
            else:
                out["adapter"] = type(self.adapter).__name__
        return out

    def text_only(self, features: Features, ontology: Ontology, options: SegmentOptions) -> sv.Detections:
        """``text_tokens="only"``: on one image's segmenter ``features``, the adapter's text tokens alone, one
        mask a class."""
        return self.tools.segment_text(features, 0, ontology, options.multimask, options.mask_threshold)

    def decoder(self, options: SegmentOptions) -> Callable | None:
        """``text_tokens=True``: ``decode(features, index, boxes_xyxy, phrases, multimask)`` with box + text
        prompts; None otherwise (the segmenter's own boxes-only decoder)."""
        return self.tools.decode if options.text_tokens else None

    def verified(self, found: sv.Detections, image: np.ndarray | None, ontology: Ontology,
                 options: SegmentOptions) -> sv.Detections:
        """``verify="clip"`` on one image's detections (at its original size; ``image``: its RGB uint8 pixels
        (H, W, 3)); unchanged otherwise."""
        if options.verify != "clip":
            return found
        with self.timer("clip.verify"):
            return self.tools.verify(found, image, ontology)
