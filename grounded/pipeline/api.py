"""``grounded.segment(image, prompt, **options)``: one call, default models built once and reused."""

from __future__ import annotations

import threading
from typing import Any

import supervision as sv

from grounded.config import ModelConfig, SegmentOptions, as_kwargs, option_names, split_kwargs
from grounded.pipeline.predictor import Predictor, Prompt
from grounded.utils.images import ImageInput

_lock = threading.Lock()
_cached: tuple[ModelConfig, Predictor] | None = None  # one set of models in memory


def get_predictor(**model_kwargs: Any) -> Predictor:
    """The shared Predictor for these model settings, built on first use (a new config replaces the old)."""
    global _cached
    config, _ = split_kwargs(model_kwargs)
    with _lock:
        if _cached is None or _cached[0] != config:
            _cached = None  # release the old models before loading new ones
            _cached = (config, Predictor(**as_kwargs(config)))
        return _cached[1]


def segment(image: ImageInput, prompt: Prompt, **kwargs: Any) -> sv.Detections:
    """Segment every instance of ``prompt`` in ``image``; see :class:`grounded.Predictor` for the output.

    ``kwargs`` are fields of :class:`grounded.config.ModelConfig` (detector, segmenter or model, device, dtype,
    speed settings, clip, adapter) and of :class:`grounded.config.SegmentOptions` (box_threshold, nms, ...).
    """
    model, _ = split_kwargs(kwargs)  # validates every name and value
    predictor = get_predictor(**as_kwargs(model))
    overrides = {k: v for k, v in kwargs.items() if k in option_names(SegmentOptions)}
    with _lock:
        predictor.set_image(image)
        return predictor.segment(prompt, **overrides)
