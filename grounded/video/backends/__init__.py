"""Video backends over transformers, chosen by the checkpoint's ``model_type`` (config.json).

``VIDEO_BACKENDS`` maps each supported ``model_type`` to its flag's role and class (``"module:Class"``, imported
when chosen). :func:`load_video_backend` reads the checkpoint's type with the registry's
``checkpoint_model_type`` and loads it; an image checkpoint given where a video one is needed, or a type
grounded does not serve, is an error naming what to pass instead.
"""

from __future__ import annotations

import importlib

import torch

from grounded.errors import ModelLoadError

# model_type -> (role: the flag it is given with, "module:Class")
VIDEO_BACKENDS: dict[str, tuple[str, str]] = {
    "sam2_video": ("segmenter", "grounded.video.backends.sam2_video:Sam2VideoSegmenter"),
    "edgetam_video": ("segmenter", "grounded.video.backends.sam2_video:EdgeTamVideoSegmenter"),
    "sam3_video": ("model", "grounded.video.backends.sam3_video:Sam3VideoTracker"),
}
_IMAGE_ONLY = {"sam": "SAM has no video memory", "sam_hq": "SAM-HQ has no video memory",
               "sam2": "a SAM 2 image checkpoint lacks the video memory weights",
               "edgetam": "an EdgeTAM image checkpoint lacks the video memory weights",
               "sam3": "a SAM 3 image checkpoint lacks the tracker"}
_FLAGS = {"segmenter": "--segmenter (a video segmenter: sam2_video, edgetam_video)",
          "model": "--model (a concept video model: sam3_video)"}


def load_video_backend(name: str, role: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
    """Load checkpoint ``name`` as the video backend its model_type names, for flag ``role`` (segmenter / model)."""
    from grounded.models.registry import check_requirements, checkpoint_model_type

    model_type = checkpoint_model_type(name, role, local_files_only)
    supported = ", ".join(repr(t) for t, (r, _) in VIDEO_BACKENDS.items() if r == role)
    if model_type not in VIDEO_BACKENDS:
        why = _IMAGE_ONLY.get(model_type, "grounded does not track with it")
        raise ModelLoadError(f"video {role} {name!r} is a {model_type!r} checkpoint ({why}); give a video checkpoint "
                             f"of type {supported} to {_FLAGS[role]}, e.g. facebook/sam2.1-hiera-tiny")
    found_role, target = VIDEO_BACKENDS[model_type]
    if found_role != role:
        raise ModelLoadError(f"{name!r} is a {model_type!r} checkpoint: pass it with {_FLAGS[found_role]}, not as the "
                             f"{role}")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    check_requirements(cls, model_type)
    try:
        return cls.from_pretrained(name, device, dtype, local_files_only)
    except ImportError as exc:
        raise ModelLoadError(f"{role} {name!r} ({model_type!r}) needs a package that is not installed ({exc}); "
                             f'install the backends extra: pip install "grounded[backends]"') from exc
