"""Video backends over transformers, chosen by the checkpoint's ``model_type`` (config.json).

The registry's one table (grounded/models/registry.py) names each video type's ``"tracker"`` class (imported
when chosen); the flag a tracker is given with is its image role's (``--segmenter`` for SAM 2.1 / EdgeTAM video,
``--model`` for SAM 3 video). :func:`load_video_backend` reads the checkpoint's type with the registry's
``checkpoint_model_type`` and loads it; an image checkpoint given where a video one is needed, or a type
grounded does not serve, is an error naming what to pass instead.
"""

from __future__ import annotations

import torch

from grounded.errors import ModelLoadError

_IMAGE_ONLY = {"sam": "SAM has no video memory", "sam_hq": "SAM-HQ has no video memory",
               "sam2": "a SAM 2 image checkpoint lacks the video memory weights",
               "edgetam": "an EdgeTAM image checkpoint lacks the video memory weights",
               "sam3": "a SAM 3 image checkpoint lacks the tracker"}
_KINDS = {"segmenter": "a video segmenter", "model": "a concept video model"}  # by the image role's flag


def _flag(role: str) -> str:
    """The flag a tracker of ``role`` is given with, and the tracker types it takes (the registry's rows)."""
    from grounded.models.registry import FLAGS, image_role, supported_types

    types = ", ".join(t for t in supported_types("tracker") if image_role(t) == role)
    return f"{FLAGS[role]} ({_KINDS[role]}: {types})"


def load_video_backend(name: str, role: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
    """Load checkpoint ``name`` as the video backend its model_type names, for flag ``role`` (segmenter / model)."""
    from grounded.models.registry import (
        backend_class,
        checkpoint_model_type,
        image_role,
        load_class,
        supported_types,
    )

    model_type = checkpoint_model_type(name, role, local_files_only)
    supported = ", ".join(repr(t) for t in supported_types("tracker") if image_role(t) == role)
    if model_type not in supported_types("tracker"):
        why = _IMAGE_ONLY.get(model_type, "grounded does not track with it")
        raise ModelLoadError(f"video {role} {name!r} is a {model_type!r} checkpoint ({why}); give a video checkpoint "
                             f"of type {supported} to {_flag(role)}, e.g. facebook/sam2.1-hiera-tiny")
    found_role = image_role(model_type)  # a tracker is given with its image role's flag
    if found_role != role:
        raise ModelLoadError(f"{name!r} is a {model_type!r} checkpoint: pass it with {_flag(found_role)}, not as the "
                             f"{role}")
    cls = backend_class(model_type, "tracker", name)
    return load_class(cls, name, role, model_type, device, dtype, local_files_only)
