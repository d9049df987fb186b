"""The one predictor of a server: built on first use, used by one request at a time, image encodings cached.

:class:`Engine` holds a lock around everything that touches the models. Image encodings are kept in a cache
bounded by bytes (:mod:`grounded.serve.cache`), keyed by the sha256 of the image's bytes, and shared by
``/v1/segment`` and ``/v1/segment/points``: asking again about an image (other thresholds, another prompt) runs only
the text-conditioned parts (Grounding DINO's fusion and decoder, SAM's mask decoder), and each click only the
segmenter's prompt encoder and mask decoder (:mod:`grounded.serve.clicks`).

A tiled request (``tiling``: :class:`grounded.config.TileOptions`, an image larger than the detector's input)
runs :class:`grounded.pipeline.tiled.TiledPredictor` over the same loaded models, under the same lock (and
behind the same admission bound, grounded/serve/admission.py): its slices and segmenter windows are encoded
for that request alone, neither read from nor kept in the encoding cache, so it is heavier than an untiled
one and the running mean ``seconds`` (Retry-After) grows with it. An image tiling leaves whole (``"auto"`` and
an image the detector sees at full size) goes the untiled, cached way: exactly the Predictor's result.

What the models cannot honour (their backends' ``refused_options``) is known before they load: the
checkpoints' ``config.json`` name the backend classes (:func:`probe_backends`), so the page offers only the
options the loaded backends honour from its first request on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import supervision as sv

from grounded.config import TileOptions
from grounded.errors import GroundedError
from grounded.serve.cache import DEFAULT_CACHE_BYTES, CachedImage, EncodingCache, image_key
from grounded.serve.clicks import ClickAnswer, click_segmenter, decode_click, describe_clicks, rle_mask
from grounded.serve.security import Refused

logger = logging.getLogger(__name__)


class Engine:
    """Lazily built predictor behind a lock. ``factory()`` builds it (``grounded.cli.common.predictor_from_args``)."""

    def __init__(self, factory: Callable[[], Any], description: dict[str, Any] | None = None,
                 probe: Callable[[], list[tuple[str, str, Any]]] | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        """``probe()``: (role, name, backend class) of the models before they load (:func:`probe_backends`);
        ``cache_bytes``: the bound of the image encoding cache."""
        self.factory = factory
        self.description = description or {}  # what the models will be, before they load
        self.probe = probe
        self.predictor: Any = None
        self.lock = threading.Lock()
        self.busy = False
        self.seconds: float | None = None  # running mean of the time one request holds the models
        self.cache = EncodingCache(cache_bytes)
        self._probed: list[tuple[str, str, Any]] | None = None
        self._no_clicks: str | None = None  # why clicks were refused, once a click found out
        self._probe_done = False

    @property
    def loaded(self) -> bool:
        return self.predictor is not None

    def _ensure_loaded(self) -> Any:
        if self.predictor is None:
            tick = time.perf_counter()
            self.predictor = self.factory()  # GroundedError (e.g. ModelLoadError) propagates with its message
            logger.info("models loaded in %.1f s", time.perf_counter() - tick)
        return self.predictor

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The predictor (built on first use), held under the lock for the ``with`` block.

        For callers that run it themselves (e.g. batches of a labelling run through ``segment_batch``, which
        leaves the kept image's encodings alone)."""
        with self.lock:
            self.busy = True
            tick = None
            try:
                predictor = self._ensure_loaded()
                tick = time.perf_counter()  # the estimate is per request, the models' loading left out
                yield predictor
            finally:
                if tick is not None:
                    took = time.perf_counter() - tick
                    self.seconds = took if self.seconds is None else 0.7 * self.seconds + 0.3 * took
                self.busy = False

    def segment(self, image: np.ndarray, image_bytes: bytes, prompt: Any, tiling: TileOptions | None = None,
                **options: Any) -> tuple[sv.Detections, bool]:
        """(detections, whether the image encodings were reused) for ``prompt`` on ``image`` (RGB uint8 (H, W, 3));
        masks at (H, W). ``tiling``: tiled inference when it slices this image (see the module docstring)."""
        key = image_key(image_bytes)
        with self.use() as predictor:
            if hasattr(predictor, "check_options"):  # a refused option costs no image encoding
                predictor.check_options(predictor.options.updated(**options))
            tiled = self._tiled(predictor, tiling)
            slices = tiled.slices(image.shape[:2]) if tiled is not None else None
            if slices is not None:
                logger.info("tiled request: %d slices of a %dx%d image", len(slices), image.shape[1], image.shape[0])
                return tiled.segment_tiled(image, slices, prompt, **options), False
            entry, cached = self._encoded(predictor, key, image)
            return predictor.segment_encoded(entry.encoding, prompt, **options)[0], cached

    @staticmethod
    def _tiled(predictor: Any, tiling: TileOptions | None) -> Any:
        """A TiledPredictor over ``predictor`` when ``tiling`` is on, else None."""
        if tiling is None or not tiling.enabled:
            return None
        from grounded.pipeline.tiled import TiledPredictor

        return TiledPredictor(predictor, tiling)

    def slices(self, hw: tuple[int, int], tiling: TileOptions | None) -> int:
        """How many slices ``tiling`` cuts an (H, W) image into with the loaded models (0: not tiled)."""
        tiled = self._tiled(self.predictor, tiling) if self.predictor is not None else None
        plan = tiled.slices(hw) if tiled is not None else None
        return 0 if plan is None else len(plan)

    def _entry(self, key: str, image: np.ndarray | None) -> CachedImage:
        entry = self.cache.get(key)
        if entry is None:
            if image is None:
                raise Refused(f"image id {key[:12]}... is not known here (never sent, or evicted from the cache): "
                              "send the image itself again", 404)
            entry = CachedImage(image)
        return entry

    def _encoded(self, predictor: Any, key: str, image: np.ndarray | None) -> tuple[CachedImage, bool]:
        """The cache entry of ``key`` with the predictor's encoding of its image (computed and kept when absent)."""
        entry = self._entry(key, image)
        cached = entry.encoding is not None
        if not cached:
            entry.encoding = predictor.encode([entry.image])
            self.cache.put(key, entry)
        return entry, cached

    def click(self, key: str, image: np.ndarray | None, points: Any, labels: Any, box: Any = None,
              mask_id: str | None = None, mask: dict | None = None) -> tuple[ClickAnswer, str, bool]:
        """One click on the image of ``key`` (``image``: its pixels when it may not be cached) -> (the answer,
        cropped to the image, its new mask id, whether the image encoding was reused).

        ``points`` [[x, y], ...] pixels, ``labels`` [1, 0, ...], ``box`` [x0, y0, x1, y1] or None; the prior is the
        low-res logits of an earlier answer ``mask_id`` on this image, else ``mask`` (COCO RLE of the image's size),
        an existing mask being fixed (:meth:`Segmenter.mask_prior`), else none."""
        from grounded.models.interfaces import PointPrompt
        from grounded.pipeline.padding import pad_image

        with self.use() as predictor:
            try:
                segmenter, separate = click_segmenter(predictor)
            except Refused as exc:
                self._no_clicks = str(exc)
                raise
            if separate:  # a concept segmenter's tracker: its own image features, nothing of the predictor's
                entry = self._entry(key, image)
                cached = entry.clicks is not None
                if not cached:
                    entry.clicks = segmenter.encode([pad_image(entry.image)])
                features = entry.clicks
            else:
                entry, cached = self._encoded(predictor, key, image)
                features = entry.encoding.segmenter
            hw = entry.image.shape[:2]
            prior = None
            if mask_id:
                prior = entry.masks.get(mask_id)
                if prior is None:
                    raise Refused(f"mask id {mask_id!r} is not known for this image (from an earlier answer on it, "
                                  "or evicted): leave mask_id out to start the object again", 404)
            elif mask is not None:
                padded = np.zeros(features.image_sizes[0], dtype=bool)
                padded[: hw[0], : hw[1]] = rle_mask(mask, hw)
                prior = segmenter.mask_prior(features, 0, padded)
            prompt = PointPrompt.of(points, labels, box, prior, image_hw=hw)
            threshold = float(getattr(getattr(predictor, "options", None), "mask_threshold", 0.0))
            answer = decode_click(segmenter, features, prompt, threshold)
            answer.mask = answer.mask[: hw[0], : hw[1]]  # the models saw the padded image (grounded.pipeline.padding)
            new_id = uuid.uuid4().hex[:16]
            entry.keep_mask(new_id, answer.logits)
            self.cache.put(key, entry)
            return answer, new_id, cached

    def describe(self) -> dict[str, Any]:
        if self.predictor is not None and hasattr(self.predictor, "describe"):
            return self.predictor.describe()
        return dict(self.description)

    def _backends(self) -> list[tuple[str, str, Any]] | None:
        """(role, name, backend instance or class) of the models: loaded, else probed; None when unknown."""
        if self.predictor is not None:
            backends = self.predictor.backends() if hasattr(self.predictor, "backends") else []
            return [(role, backend.name, backend) for role, backend in backends]
        if not self._probe_done and self.probe is not None:
            try:
                self._probed = self.probe()
            except GroundedError as exc:  # the first segment request reports it, with the load's own message
                logger.warning("cannot tell yet which options the models honour: %s", exc)
            self._probe_done = True
        return self._probed if self.probe is not None else []

    def refused(self) -> dict[str, str] | None:
        """Option -> why a model of this server cannot honour it; None when unknown until the models load."""
        found = self._backends()
        return None if found is None else refusals(found)

    def clicks(self) -> dict[str, Any]:
        """Whether clicks are served (``available`` None: known once tried), by which segmenter, else why not."""
        if self._no_clicks is not None:
            return {"available": False, "segmenter": None, "why": self._no_clicks}
        found = self._backends() if self.predictor is not None or self.probe is not None else None
        if found is None:
            return {"available": None, "segmenter": None, "why": "not known until the models load"}
        return describe_clicks(found)


def refusals(backends: list[tuple[str, str, Any]]) -> dict[str, str]:
    """SegmentOptions field -> why, from each (role, name, backend class or instance)'s ``refused_options``."""
    out: dict[str, str] = {}
    for role, name, backend in backends:
        cls = backend if isinstance(backend, type) else type(backend)
        for option, reason in backend.refused_options.items():
            why = f"the {role} {name!r} ({cls.__name__}): {reason}"
            out[option] = f"{out[option]}; {why}" if option in out else why
    return out


def probe_backends(models: dict[str, str], local_files_only: bool = False) -> list[tuple[str, str, type]]:
    """(role, name, backend class) for ``models`` (role -> checkpoint), from their config.json alone."""
    from grounded.models.registry import backend_class, checkpoint_model_type

    return [(role, name, backend_class(checkpoint_model_type(name, role, local_files_only), role, name))
            for role, name in models.items()]
