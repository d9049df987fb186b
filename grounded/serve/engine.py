"""The one predictor of a server: built on first use, used by one request at a time, last image cached.

The predictor keeps one image's encodings (``set_image``), so two requests interleaving would segment one
image with the other's encodings; :class:`Engine` holds a lock around everything that touches it. The last
image's encodings are kept, keyed by the sha256 of its bytes, so asking again about the same image (other
thresholds, another prompt) runs only the text-conditioned parts (Grounding DINO's fusion and decoder, SAM's
mask decoder), not the image encoders.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import supervision as sv

logger = logging.getLogger(__name__)


class Engine:
    """Lazily built predictor behind a lock. ``factory()`` builds it (``grounded.cli.common.predictor_from_args``)."""

    def __init__(self, factory: Callable[[], Any], description: dict[str, Any] | None = None) -> None:
        self.factory = factory
        self.description = description or {}  # what the models will be, before they load
        self.predictor: Any = None
        self.lock = threading.Lock()
        self.busy = False
        self._image_key: str | None = None

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
            try:
                yield self._ensure_loaded()
            finally:
                self.busy = False

    def segment(self, image: np.ndarray, image_bytes: bytes, prompt: Any, **options: Any) -> tuple[sv.Detections, bool]:
        """(detections, whether the image encodings were reused) for ``prompt`` on ``image``."""
        key = hashlib.sha256(image_bytes).hexdigest()
        with self.use() as predictor:
            cached = key == self._image_key
            if not cached:
                self._image_key = None  # a failed set_image must not leave a stale key
                predictor.set_image(image)
                self._image_key = key
            return predictor.segment(prompt, **options), cached

    def describe(self) -> dict[str, Any]:
        if self.predictor is not None and hasattr(self.predictor, "describe"):
            return self.predictor.describe()
        return dict(self.description)
