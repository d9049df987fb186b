"""The one predictor of a server: built on first use, used by one request at a time, last image cached.

The predictor keeps one image's encodings (``set_image``), so two requests interleaving would segment one
image with the other's encodings; :class:`Engine` holds a lock around everything that touches it. The last
image's encodings are kept, keyed by the sha256 of its bytes, so asking again about the same image (other
thresholds, another prompt) runs only the text-conditioned parts (Grounding DINO's fusion and decoder, SAM's
mask decoder), not the image encoders.

What the models cannot honour (their backends' ``refused_options``) is known before they load: the
checkpoints' ``config.json`` name the backend classes (:func:`probe_backends`), so the page offers only the
options the loaded backends honour from its first request on.
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

from grounded.errors import GroundedError

logger = logging.getLogger(__name__)


class Engine:
    """Lazily built predictor behind a lock. ``factory()`` builds it (``grounded.cli.common.predictor_from_args``)."""

    def __init__(self, factory: Callable[[], Any], description: dict[str, Any] | None = None,
                 probe: Callable[[], list[tuple[str, str, Any]]] | None = None) -> None:
        """``probe()``: (role, name, backend class) of the models before they load (:func:`probe_backends`)."""
        self.factory = factory
        self.description = description or {}  # what the models will be, before they load
        self.probe = probe
        self.predictor: Any = None
        self.lock = threading.Lock()
        self.busy = False
        self.seconds: float | None = None  # running mean of the time one request holds the models
        self._image_key: str | None = None
        self._probed: dict[str, str] | None = None
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

    def segment(self, image: np.ndarray, image_bytes: bytes, prompt: Any, **options: Any) -> tuple[sv.Detections, bool]:
        """(detections, whether the image encodings were reused) for ``prompt`` on ``image``."""
        key = hashlib.sha256(image_bytes).hexdigest()
        with self.use() as predictor:
            if hasattr(predictor, "check_options"):  # a refused option costs no image encoding
                predictor.check_options(predictor.options.updated(**options))
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

    def refused(self) -> dict[str, str] | None:
        """Option -> why a model of this server cannot honour it; None when unknown until the models load."""
        if self.predictor is not None:
            backends = self.predictor.backends() if hasattr(self.predictor, "backends") else []
            return refusals([(role, backend.name, backend) for role, backend in backends])
        if not self._probe_done and self.probe is not None:
            try:
                self._probed = refusals(self.probe())
            except GroundedError as exc:  # the first segment request reports it, with the load's own message
                logger.warning("cannot tell yet which options the models honour: %s", exc)
            self._probe_done = True
        return self._probed if self.probe is not None else {}


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
