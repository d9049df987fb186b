"""``TiledPredictor``: a Predictor's already-loaded backends run over slices of large images (tiled inference).

Usage::

    from grounded import Predictor
    from grounded.pipeline.tiled import TiledPredictor

    tiled = TiledPredictor(Predictor(), tile="auto")        # or tile=640, tile_overlap=0.25, tile_whole=False
    found = tiled.segment_batch(["drone.jpg"], "a car")    # sv.Detections, masks at the image's full size

Per image (decoded once, at full resolution; slices and windows are views of it):

1. Should it be tiled? ``tile="auto"``: only when the image is larger than what the detector (or SAM 3) sees
   (the backend's ``input_size``), with slices of the side the backend sees at full resolution;
   ``tile=N``: N x N slices. When one slice would cover the whole image, the image goes through the
   Predictor untiled: exactly its result.
2. Detector + segmenter: the slices (SAHI's coordinates) go through the detector ``tile_batch`` at a time
   (default 4 on a GPU, 1 on the CPU),
   and, unless ``tile_whole=False``, the whole image reduced to the detector's input (SAHI's "standard
   prediction"); the boxes, moved to full-image pixels, are merged (class-aware GREEDYNMM,
   :func:`~grounded.pipeline.tiling.greedy_nmm`), then the pipeline's NMS and ``max_detections``
   (:mod:`grounded.pipeline.selection`). The segmenter then runs at full resolution in windows around the
   merged boxes (:func:`~grounded.pipeline.tiling.crop_regions`): its image encoder once per window, the
   boxes of a window decoded together as the Predictor decodes them.
3. SAM 3 (a concept segmenter): it runs on each slice (and the reduced whole image); its instances are merged
   as the boxes above, and the masks of merged instances are united across the slice edges. A merged instance
   takes its mask from the slices that found it; only an instance no slice found (a large object) keeps the
   mask of the whole-image pass, scaled up, as it would be without tiling.

The detector's part (slices, merge, selection: :func:`detect_tiled`) is shared with video tracking, which
tiles the detector on its key frames (grounded/video/predictor.py).

Masks come back at the image's full size as supervision's ``CompactMask`` (each mask run-length encoded within
its own box), which ``sv.Detections``, its annotators and grounded's writers read like a dense (N, H, W) array;
so memory follows the slice and the window, not the image. Output as :class:`grounded.Predictor`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import supervision as sv

from grounded.config import TILE_AUTO, SegmentOptions, TileOptions
from grounded.errors import InputError, OrderError
from grounded.models.detections import empty_detections
from grounded.ontology import Ontology
from grounded.pipeline.padding import crop_detections, pad_image
from grounded.pipeline.predictor import Prompt
from grounded.pipeline.selection import select_boxes, select_masks, top_k
from grounded.pipeline.tiling import (
    batches,
    compact_masks,
    crop_regions,
    fitted_size,
    greedy_nmm,
    input_side,
    resized,
    slice_boxes,
    union_masks,
)
from grounded.utils.images import ImageInput, load_image

logger = logging.getLogger(__name__)

MASK_PIXELS_PER_CALL = 16_000_000  # mask pixels decoded per segmenter call (bounds memory for large windows)
NMS_HEAD = 2048  # NMS runs on the best this-many boxes first (see select_bounded)


class TiledPredictor:
    """Tiled inference over a :class:`grounded.Predictor`'s backends; see the module docstring."""

    def __init__(self, predictor: Any, tiling: TileOptions | None = None, **tile_options: Any) -> None:
        """``predictor``: a loaded :class:`grounded.Predictor`; ``tiling`` (a TileOptions) or its fields as
        keywords (``tile``, default "auto"; ``tile_overlap``, ``tile_whole``, ``tile_batch``)."""
        if not all(hasattr(predictor, role) for role in ("detector", "segmenter", "model")):
            raise InputError(f"tiling runs grounded's own models: give a grounded.Predictor, not "
                             f"{type(predictor).__name__}")
        self.predictor = predictor
        if tiling is not None and tile_options:
            raise InputError(f"give tiling= or its fields {sorted(tile_options)}, not both")
        self.tiling = tiling if tiling is not None else TileOptions(**{"tile": TILE_AUTO, **tile_options})
        self._image: np.ndarray | None = None

    def describe(self) -> dict[str, Any]:
        """The Predictor's identity plus the tiling settings (they change results: resume checks see them)."""
        return {**self.predictor.describe(), "tiling": asdict(self.tiling)}

    def set_image(self, image: ImageInput) -> None:
        self._image = None
        self._image = load_image(image)

    def segment(self, prompt: Prompt, **options: Any) -> sv.Detections:
        """Segment ``prompt`` in the image given to :meth:`set_image`."""
        if self._image is None:
            raise OrderError("no image set: call tiled.set_image(image) before tiled.segment(prompt)")
        return self.segment_batch([self._image], prompt, **options)[0]

    def segment_batch(self, images: Sequence[ImageInput], prompt: Prompt, **options: Any) -> list[sv.Detections]:
        """One Detections per image: the untiled ones batched through the Predictor, the others tiled."""
        arrays = [load_image(image) for image in images]
        plans = [self.slices(array.shape[:2]) for array in arrays]
        results: list[sv.Detections | None] = [None] * len(arrays)
        plain = [i for i, plan in enumerate(plans) if plan is None]
        if plain:
            found = self.predictor.segment_batch([arrays[i] for i in plain], prompt, **options)
            for i, detections in zip(plain, found, strict=True):
                results[i] = detections
        for i, plan in enumerate(plans):
            if plan is not None:
                results[i] = self.segment_tiled(arrays[i], plan, prompt, **options)
        return results

    def slices(self, hw: tuple[int, int]) -> np.ndarray | None:
        """(K, 4) int XYXY slices of an (H, W) image, or None when it is not tiled (see the module docstring)."""
        return plan_slices(self.predictor.model or self.predictor.detector, hw, self.tiling)

    # ------------------------------------------------------------------------------------------ one image
    def segment_tiled(self, image: np.ndarray, slices: np.ndarray, prompt: Prompt, **options: Any) -> sv.Detections:
        """RGB uint8 (H, W, 3) and its (K, 4) slices -> Detections at full size (see the module docstring)."""
        predictor = self.predictor
        opts = predictor.options.updated(**options)
        predictor.check_options(opts)
        if opts.text_tokens == "only":
            raise InputError("text_tokens='only' (--text-only) runs no detector, so there is nothing to tile; "
                             "drop --tile or --text-only")
        clip = predictor.clip_stage(opts)
        if clip is not None:
            clip.check(opts)  # refused now, not after the slices
        ontology = Ontology.from_prompt(prompt)
        if predictor.model is not None:
            found = select_masks(self._select(self._concept(image, slices, ontology, opts), opts), opts)
        else:
            decode = clip.decoder(opts) if clip is not None else None
            boxes = detect_tiled(predictor.detector, image, slices, ontology, opts, self.tiling, predictor.timer)
            found = select_masks(self._masks(image, boxes, opts, decode), opts)
        return clip.verified(found, image, ontology, opts) if clip is not None else found

    def _concept(self, image: np.ndarray, slices: np.ndarray, ontology: Ontology, opts: SegmentOptions) -> sv.Detections:
        """SAM 3 on the slices and the whole image; instances merged, masks united across slice edges."""
        model, hw = self.predictor.model, image.shape[:2]
        parts = []
        for found, view in tiled_views(model, image, slices, lambda f: model.segment(f, ontology, opts), self.tiling):
            if len(found):
                part = _boxes_only(found, view)
                masks = compact_masks(found.mask, view.offset, hw if view.is_slice else view.hw)
                part.mask = masks if view.is_slice else masks.resize(tuple(hw))  # whole image: its reduced view
                part.data.update(mask_score=found.data["mask_score"], from_slice=np.full(len(found), view.is_slice))
                parts.append(part)
        if not parts:
            return empty_detections(hw)
        every = sv.Detections.merge(parts)
        from_slice = every.data.pop("from_slice")
        with self.predictor.timer("tiling.merge"):
            boxes, groups = greedy_nmm(every.xyxy, every.confidence, every.class_id)
            sources = [[m for m in g if from_slice[m]] or g for g in groups]  # slice masks over the reduced view
            merged = every[[g[0] for g in groups]]
            merged.xyxy = boxes.astype(np.float32)
            merged.mask = union_masks(every.mask, sources)
        return merged

    def _masks(self, image: np.ndarray, boxes: sv.Detections, opts: SegmentOptions, decode: Any = None
               ) -> sv.Detections:
        """The segmenter's mask for every box, at full resolution, in windows of its own input side."""
        hw, segmenter = image.shape[:2], self.predictor.segmenter
        if len(boxes) == 0:
            return empty_detections(hw)
        parts = []
        for (x0, y0, x1, y1), members in crop_regions(boxes.xyxy, hw, input_side(segmenter)):
            window = np.ascontiguousarray(image[y0:y1, x0:x1])
            padded = pad_image(window)
            features = segmenter.encode([padded])  # one window: a batch of one
            per_call = max(1, min(opts.sam_box_batch, MASK_PIXELS_PER_CALL // (padded.shape[0] * padded.shape[1])))
            for chunk in batches(members, per_call):
                local = boxes[chunk]
                local.xyxy = (local.xyxy - np.array([x0, y0, x0, y0], dtype=np.float32)).astype(np.float32)
                local = self.predictor._add_masks(features, local, opts, decode)  # the Predictor's own decoding
                if padded.shape != window.shape:
                    local = crop_detections(local, window.shape[:2])
                local.xyxy = local.xyxy + np.array([x0, y0, x0, y0], dtype=np.float32)
                local.mask = compact_masks(local.mask, (x0, y0), hw)
                parts.append(local)
        return top_k(sv.Detections.merge(parts), len(boxes))

    @staticmethod
    def _select(detections: sv.Detections, opts: SegmentOptions) -> sv.Detections:
        return select_bounded(detections, opts)


@dataclass(frozen=True)
class View:
    """Where a view the backend saw lies in the image: ``offset`` (x, y) and ``scale`` (x, y) from its pixels to
    the image's, its own (h, w), and whether it is a slice (else the reduced whole image)."""

    offset: tuple[int, int]
    scale: tuple[float, float]
    hw: tuple[int, int]
    is_slice: bool


def _boxes_only(found: sv.Detections, view: View) -> sv.Detections:
    """A view's detections in full-image pixels, boxes and labels only (one set of fields for every view)."""
    (sx, sy), (dx, dy) = view.scale, view.offset
    xyxy = found.xyxy.astype(np.float64) * [sx, sy, sx, sy] + [dx, dy, dx, dy]
    return sv.Detections(xyxy=xyxy.astype(np.float32), confidence=found.confidence.astype(np.float32),
                         class_id=found.class_id.astype(int),
                         data={"class_name": found.data["class_name"], "phrase": found.data["phrase"]})


# ------------------------------------------------------------------ the parts TiledPredictor and video share
def plan_slices(backend: Any, hw: tuple[int, int], tiling: TileOptions) -> np.ndarray | None:
    """(K, 4) int XYXY slices of an (H, W) image for ``backend`` (the detector, or SAM 3), or None when the image
    is not tiled: tiling off, ``tile="auto"`` and the image no larger than the backend sees, or one slice."""
    if not tiling.enabled:
        return None
    if tiling.tile == TILE_AUTO:
        seen = backend.input_size(hw).resized
        if hw[0] <= seen[0] and hw[1] <= seen[1]:
            return None
        side = input_side(backend)
    else:
        side = int(tiling.tile)
    boxes = slice_boxes(hw, (side, side), tiling.tile_overlap)
    return None if len(boxes) == 1 else boxes


def tiled_views(backend: Any, image: np.ndarray, slices: np.ndarray, call: Callable[[Any], list[sv.Detections]],
                tiling: TileOptions) -> list[tuple[sv.Detections, View]]:
    """``call(backend.encode(views))`` over the whole image (reduced to the backend's input, when
    ``tiling.tile_whole``) and the slices, ``tile_batch`` at a time -> [(detections in the view's own pixels,
    padding removed; where the view lies in the image)]."""
    hw, out = image.shape[:2], []
    if tiling.tile_whole:
        whole = resized(image, fitted_size(hw, backend.input_size(hw).resized))
        scale = (hw[1] / whole.shape[1], hw[0] / whole.shape[0])
        out.append((_run(backend, [whole], call)[0], View((0, 0), scale, whole.shape[:2], False)))
    for group in batches(slices, tiling.tile_batch or (4 if backend.device.type == "cuda" else 1)):
        views = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in group]
        found = _run(backend, views, call)
        out.extend((f, View((int(b[0]), int(b[1])), (1.0, 1.0), v.shape[:2], True))
                   for f, b, v in zip(found, group, views, strict=True))
    return out


def _run(backend: Any, views: list[np.ndarray], call: Callable[[Any], list[sv.Detections]]) -> list[sv.Detections]:
    padded = [pad_image(np.ascontiguousarray(view)) for view in views]
    found = call(backend.encode(padded))
    return [d if p.shape == v.shape else crop_detections(d, v.shape[:2])
            for d, p, v in zip(found, padded, views, strict=True)]


def detect_tiled(detector: Any, image: np.ndarray, slices: np.ndarray, ontology: Ontology, opts: SegmentOptions,
                 tiling: TileOptions, timer: Callable[[str], AbstractContextManager] | None = None) -> sv.Detections:
    """The detector's boxes over the slices (and the reduced whole image) of an RGB uint8 (H, W, 3) image, in
    full-image XYXY pixels: merged (class-aware GREEDYNMM) and selected (NMS, ``max_detections``) as the
    untiled pipeline selects them; no masks. Used by :class:`TiledPredictor` and by video key frames
    (grounded/video/predictor.py). ``timer``: a stage timer (``predictor.timer``) for the merge, or None."""
    parts = [_boxes_only(found, view) for found, view in
             tiled_views(detector, image, slices, lambda f: detector.detect(f, ontology, opts), tiling) if len(found)]
    if not parts:
        return _boxes_only(empty_detections(), View((0, 0), (1.0, 1.0), image.shape[:2], True))
    every = sv.Detections.merge(parts)
    with timer("tiling.merge") if timer is not None else nullcontext():
        boxes, groups = greedy_nmm(every.xyxy, every.confidence, every.class_id)
    merged = every[[g[0] for g in groups]]  # the keeper: the group's best score, class and phrase
    merged.xyxy = boxes.astype(np.float32)
    logger.debug("%d slices: %d boxes -> %d merged", len(slices), len(every), len(merged))
    return select_bounded(merged, opts)


def select_bounded(detections: sv.Detections, opts: SegmentOptions) -> sv.Detections:
    """:func:`select_boxes` in bounded memory: NMS keeps or drops a box by the boxes scored above it alone,
    so NMS over the best ``NMS_HEAD`` boxes, then the best ``max_detections``, equals NMS over all of them
    whenever that leaves ``max_detections``; otherwise the head grows."""
    head = max(NMS_HEAD, 4 * opts.max_detections)
    while True:
        kept = select_boxes(top_k(detections, head), opts)
        if len(kept) >= opts.max_detections or head >= len(detections):
            return kept
        head *= 4


@dataclass(frozen=True)
class TiledFactory:
    """Builds ``TiledPredictor(factory(), tiling)``: picklable, as the labelling engines ship factories."""

    factory: Callable[[], Any]
    tiling: TileOptions

    def __call__(self) -> TiledPredictor:
        return TiledPredictor(self.factory(), self.tiling)


def with_tiling(predictor: Any, tiling: TileOptions | None) -> Any:
    """``predictor`` tiled as ``tiling`` says, or ``predictor`` itself when tiling is off."""
    return predictor if tiling is None or not tiling.enabled else TiledPredictor(predictor, tiling)
