"""Build apart from use: names, folders and settings -> loaded backends -> a :class:`grounded.Predictor`.

The Predictor takes backends that are already built (``Predictor(detector=<Detector>, segmenter=<Segmenter>)``
or ``Predictor(model=<ConceptSegmenter>)``), so one loaded model can serve several predictors (one SAM behind
two detectors), a tracker or a tiler. This module is the builder::

    predictor = grounded.load_predictor(ModelConfig(detector="IDEA-Research/grounding-dino-tiny"), box_threshold=0.3)
    predictor = Predictor.from_pretrained("IDEA-Research/grounding-dino-tiny", preset="fast")   # the same
    sam = build_backends(ModelConfig(segmenter="facebook/sam-vit-base")).segmenter   # one role alone

Each role of a :class:`~grounded.config.ModelConfig` may be a name or folder (loaded through the registry by
its ``model_type``, grounded/models/registry.py) or an object already built (a backend without a config.json,
e.g. a caller's own Detector, is passed in this way). The builder resolves the device, dtype and defaults,
loads the named roles and applies the speed settings (grounded/models/acceleration.py) to the backends it
loaded only: a backend passed in keeps whatever its caller did to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from grounded.config import (
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    ModelConfig,
    as_kwargs,
)
from grounded.models.acceleration import ResolvedAcceleration, apply_acceleration, resolve_acceleration

if TYPE_CHECKING:  # pragma: no cover
    pass

ROLES = ("detector", "segmenter", "model")


def is_built(value: Any) -> bool:
    """Whether a role's value is a backend object (not a name, a folder or None)."""
    return value is not None and not isinstance(value, (str, os.PathLike))


@dataclass
class Backends:
    """Loaded backends by role (detector + segmenter, or model) and the speed settings applied to those loaded."""

    detector: Any = None
    segmenter: Any = None
    model: Any = None
    acceleration: ResolvedAcceleration | None = None

    def roles(self) -> dict[str, Any]:
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


def _with_defaults(config: ModelConfig) -> ModelConfig:
    """The default detector / segmenter for the roles left empty (none when a concept segmenter is given)."""
    if config.model is not None:
        return config
    return replace(config, detector=DEFAULT_DETECTOR if config.detector is None else config.detector,
                   segmenter=DEFAULT_SEGMENTER if config.segmenter is None else config.segmenter)


def build_backends(config: ModelConfig, roles: tuple[str, ...] = ROLES) -> Backends:
    """Load every named role of ``config`` among ``roles`` (objects are kept as given; an empty detector or
    segmenter is the default one), then apply its speed settings to the backends loaded here.
    ``roles=("segmenter",)`` builds that role alone (e.g. one SAM for several predictors)."""
    from grounded.models.loading import resolve_device, resolve_dtype
    from grounded.models.registry import load_backend

    config = _with_defaults(config)
    acceleration = resolve_acceleration(config.preset, **as_kwargs(config.acceleration))
    device, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    built, loaded = Backends(acceleration=acceleration), []
    for role in roles:
        value = getattr(config, role)
        if value is None:
            continue
        if not is_built(value):
            value = load_backend(str(value), role, device, dtype, config.local_files_only)
            loaded.append(value)
        setattr(built, role, value)
    if loaded:
        apply_acceleration(acceleration, *loaded)
    return built
