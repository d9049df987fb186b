"""Which backend class serves a checkpoint in which role: chosen by the ``model_type`` in its config.json.

``BACKENDS`` is the one table: each supported ``model_type`` -> the roles it serves -> the backend class, as
``"module:Class"`` so that nothing is imported before it is used (backends whose processors need
torchvision/timm import them only when chosen). Roles: ``"detector"``, ``"segmenter"``, ``"model"`` (a concept
segmenter) and ``"tracker"`` (a video model following objects over frames). A type may serve several roles:
the hub publishes SAM 2.1, EdgeTAM and SAM 3 as video checkpoints (``sam2_video``, ``edgetam_video``,
``sam3_video``), whose weights hold the image model too (transformers' image classes load them: checked in
tests/backends/test_published_shapes.py). A role whose class is ``None`` is one the checkpoint serves but this
grounded version has no backend for: loading it there is an error saying so.

A backend without a config.json (one of the caller's own, or the test doubles of grounded/testing/fake.py) is
named by its class, ``"package.module:Class"`` (:func:`class_spec`), and built by its ``from_pretrained``.

``load_backend(name, role, device, dtype, local_files_only)`` reads the checkpoint's config (a local folder or
a cached / downloadable Hugging Face name), looks its ``model_type`` up here and loads the backend; an
unsupported type, or a checkpoint of another role, is an error that lists the supported ones.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

import torch

from grounded.errors import InputError, ModelLoadError
from grounded.models.loading import load_pretrained

# model_type -> {role: "module:Class" (None: served by the checkpoint, no backend here yet)}; a tracker is given
# with its image role's flag (grounded track --segmenter / --model: grounded/video/backends). The README's models
# table names the published checkpoints of each type (tests/backends/test_published_shapes.py checks the two agree).
_SAM2 = "grounded.models.backends.sam2:Sam2Segmenter"
_EDGETAM = "grounded.models.backends.sam2:EdgeTamSegmenter"
_SAM3 = "grounded.models.backends.sam3:Sam3ConceptSegmenter"
BACKENDS: dict[str, dict[str, str | None]] = {
    # open-vocabulary detectors
    "grounding-dino": {"detector": "grounded.models.backends.grounding_dino:GroundingDinoDetector"},
    "mm-grounding-dino": {"detector": "grounded.models.backends.mm_grounding_dino:MMGroundingDinoDetector"},
    "owlv2": {"detector": "grounded.models.backends.owlv2:Owlv2Detector"},
    "omdet-turbo": {"detector": "grounded.models.backends.omdet_turbo:OmDetTurboDetector"},
    # promptable segmenters (boxes -> masks); the video checkpoints through the image class, as transformers allows
    "sam": {"segmenter": "grounded.models.backends.sam:SamSegmenter"},
    "sam_hq": {"segmenter": "grounded.models.backends.sam_hq:SamHQSegmenter"},
    "sam2": {"segmenter": _SAM2},
    "sam2_video": {"segmenter": _SAM2, "tracker": "grounded.video.backends.sam2_video:Sam2VideoSegmenter"},
    "edgetam": {"segmenter": _EDGETAM},
    "edgetam_video": {"segmenter": _EDGETAM, "tracker": "grounded.video.backends.sam2_video:EdgeTamVideoSegmenter"},
    "sam3_tracker": {"segmenter": "grounded.models.backends.sam2:Sam3TrackerSegmenter"},  # SAM 3's tracker alone
    # concept segmenters (image + text -> masks); sam3_video's detector is SAM 3 itself
    "sam3": {"model": _SAM3},
    "sam3_video": {"model": _SAM3, "tracker": "grounded.video.backends.sam3_video:Sam3VideoTracker"},
}

EXTRA_HINT = 'pip install "grounded[backends]"'  # torchvision + timm, for the backends whose processors need them
ROLE_NAMES = {"detector": "an open-vocabulary detector", "segmenter": "a promptable segmenter (boxes -> masks)",
              "model": "a concept segmenter (image + text -> masks)",
              "tracker": "a video tracker (objects followed over frames)"}
INTERFACES = {"detector": "Detector", "segmenter": "Segmenter", "model": "ConceptSegmenter"}  # each role's class
FLAGS = {"detector": "--detector", "segmenter": "--segmenter", "model": "--model"}  # the image roles' CLI flags


class _ConfigDict:
    """``from_pretrained`` that reads a checkpoint's config.json as a dict (any model_type, known or not)."""

    __name__ = "config.json"

    @staticmethod
    def from_pretrained(name: str, **kwargs: Any) -> dict[str, Any]:
        from transformers import PretrainedConfig

        return PretrainedConfig.get_config_dict(name, **kwargs)[0]


def supported_types(role: str) -> list[str]:
    """The ``model_type`` values with a backend for ``role`` here, in the table's order."""
    return [t for t, roles in BACKENDS.items() if roles.get(role)]


def image_role(model_type: str) -> str:
    """The image role (detector, segmenter or model) ``model_type`` has a backend for."""
    return next(role for role, target in BACKENDS[model_type].items() if target and role in FLAGS)


def image_types(role: str) -> list[str]:
    """The image checkpoints' types with a backend for ``role`` (the video checkpoints, which also track, left out)."""
    return [t for t in supported_types(role) if "tracker" not in BACKENDS[t]]


def types_served_by(cls: type) -> tuple[str, ...]:
    """The ``model_type`` values whose row names backend class ``cls`` (in any role), in the table's order."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    return tuple(t for t, roles in BACKENDS.items() if target in roles.values())


def roles_of(model_type: str) -> list[str]:
    """Every role ``model_type`` serves (a backend here or not), in the table's order."""
    return list(BACKENDS.get(model_type, {}))


def checkpoint_model_type(name: str, role: str, local_files_only: bool = False) -> str:
    """``model_type`` from the config.json of a folder or a (cached, else downloaded) Hugging Face name."""
    config = load_pretrained(_ConfigDict, name, role, local_files_only=local_files_only)
    model_type = config.get("model_type")
    if not model_type:
        raise ModelLoadError(f"{role} model {name!r} has no model_type in its config.json; pass a checkpoint "
                             f"saved with save_pretrained() (supported {role} types: {', '.join(supported_types(role))})")
    return str(model_type)


def backend_class(model_type: str, role: str, name: str = "") -> type:
    """The backend class serving ``model_type`` in ``role``; unsupported types and other roles are errors."""
    if role not in ROLE_NAMES:
        raise InputError(f"role must be one of {sorted(ROLE_NAMES)}, got {role!r}")
    expected = ", ".join(map(repr, supported_types(role)))
    what = "concept segmenter (--model)" if role == "model" else f"{role} model"
    if model_type not in BACKENDS:
        raise ModelLoadError(f"{what} {name!r} is a {model_type!r} checkpoint, which grounded does not "
                             f"support; supported {role} types: {expected}")
    roles = BACKENDS[model_type]
    if role not in roles:
        served = " and ".join(ROLE_NAMES[r] for r in roles)
        flags = [r for r in roles if roles[r] and r in FLAGS]
        use = f": pass it with {FLAGS[flags[0]]} (Python: {flags[0]}=...)" if flags else ""
        raise ModelLoadError(f"{what} {name!r} is a {model_type!r} checkpoint, expected {expected} "
                             f"({ROLE_NAMES[role]}); {model_type!r} is {served}{use}")
    target = roles[role]
    if target is None:
        raise ModelLoadError(f"{name!r} is a {model_type!r} checkpoint, which serves as {ROLE_NAMES[role]}, but this "
                             f"grounded version has no {role} backend; supported {role} types here: "
                             f"{expected or 'none'}")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").startswith("grounded"):
            raise ModelLoadError(f"the {model_type!r} backend ({target}) is not part of this grounded version; "
                                 f"supported {role} types here: {expected}") from exc
        raise ModelLoadError(f"the {model_type!r} backend could not be imported ({type(exc).__name__}: {exc}); "
                             f"it needs the backends extra: {EXTRA_HINT}") from exc
    return getattr(module, class_name)


def check_requirements(cls: type, model_type: str) -> None:
    """Import the optional packages a backend needs (``cls.requires``); their absence names the extra."""
    for package in getattr(cls, "requires", ()):
        try:
            importlib.import_module(package)
        except Exception as exc:  # noqa: BLE001  (a CUDA torchvision on a CPU torch fails with RuntimeError)
            raise ModelLoadError(f"the {model_type!r} backend needs {package}, which cannot be imported here "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                                 f"install the backends extra: {EXTRA_HINT}") from exc


_CLASS_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # "package.module:Class" (no hub name has a colon)


def class_spec(name: str, role: str) -> type | None:
    """The backend class ``name`` spells as ``"package.module:Class"`` (None for a checkpoint name or folder);
    it must implement ``role``'s interface (grounded/models/interfaces.py)."""
    if not _CLASS_SPEC.match(name) or os.path.exists(name):
        return None
    module_name, class_name = name.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"{role} {name!r} names a backend class that cannot be imported "
                             f"({type(exc).__name__}: {exc}); give a checkpoint name or folder, or an importable "
                             f"'package.module:Class'") from exc
    if not (isinstance(cls, type) and getattr(cls, "role", None) == role):  # each interface sets its role
        raise ModelLoadError(f"{role} {name!r} is not a {INTERFACES[role]} (grounded.models.interfaces); "
                             f"pass a class implementing it")
    return cls


def load_backend(name: str, role: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
    """Load checkpoint ``name`` (Hugging Face name or folder) as the backend of ``role`` its model_type names.

    ``role``: ``"detector"``, ``"segmenter"`` or ``"model"`` (concept segmenter). Raises ModelLoadError for a
    missing checkpoint, an unsupported model_type (listing the supported ones), a checkpoint of another role
    (naming the flag to use) and a backend whose optional packages are missing (naming the extra).
    """
    if (cls := class_spec(name, role)) is not None:
        return cls.from_pretrained(name, device, dtype, local_files_only)
    model_type = checkpoint_model_type(name, role, local_files_only)
    return load_class(backend_class(model_type, role, name), name, role, model_type, device, dtype, local_files_only)


def load_class(cls: type, name: str, role: str, model_type: str, device: torch.device, dtype: torch.dtype,
               local_files_only: bool = False):
    """``cls.from_pretrained(name, ...)`` once its optional packages are checked; a missing one (e.g. a
    processor that exists only as a torchvision class) is a ModelLoadError naming the extra."""
    check_requirements(cls, model_type)
    try:
        return cls.from_pretrained(name, device, dtype, local_files_only)
    except ImportError as exc:
        raise ModelLoadError(f"{role} model {name!r} ({model_type!r}) needs a package that is not installed "
                             f"({exc}); install the backends extra: {EXTRA_HINT}") from exc
