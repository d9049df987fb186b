"""Which backend class serves which checkpoint: chosen by ``model_type`` in the checkpoint's config.json.

``BACKENDS`` maps each supported ``model_type`` to its role (``"detector"``, ``"segmenter"`` or
``"model"``, a concept segmenter) and the backend class, as ``"module:Class"`` so that nothing is imported
before it is used (backends whose processors need torchvision/timm import them only when chosen).

``load_backend(name, role, device, dtype, local_files_only)`` reads the checkpoint's config (a local folder or
a cached / downloadable Hugging Face name), looks its ``model_type`` up here and loads the backend; an
unsupported type, or a checkpoint of another role, is an error that lists the supported ones.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from grounded.errors import InputError, ModelLoadError
from grounded.models.loading import load_pretrained

# model_type -> (role, "module:Class"). Keep in step with the README's models table.
BACKENDS: dict[str, tuple[str, str]] = {
    # open-vocabulary detectors
    "grounding-dino": ("detector", "grounded.models.detector:GroundingDinoDetector"),
    "mm-grounding-dino": ("detector", "grounded.models.backends.mm_grounding_dino:MMGroundingDinoDetector"),
    "owlv2": ("detector", "grounded.models.backends.owlv2:Owlv2Detector"),
    "omdet-turbo": ("detector", "grounded.models.backends.omdet_turbo:OmDetTurboDetector"),
    # promptable segmenters (boxes -> masks)
    "sam": ("segmenter", "grounded.models.segmenter:SamSegmenter"),
    "sam_hq": ("segmenter", "grounded.models.backends.sam_hq:SamHQSegmenter"),
    "sam2": ("segmenter", "grounded.models.backends.sam2:Sam2Segmenter"),
    "edgetam": ("segmenter", "grounded.models.backends.sam2:EdgeTamSegmenter"),
    "sam3_tracker": ("segmenter", "grounded.models.backends.sam2:Sam3TrackerSegmenter"),
    # concept segmenters (image + text -> masks)
    "sam3": ("model", "grounded.models.backends.sam3:Sam3ConceptSegmenter"),
}

EXTRA_HINT = 'pip install "grounded[backends]"'  # torchvision + timm, for the backends whose processors need them
ROLE_NAMES = {"detector": "an open-vocabulary detector", "segmenter": "a promptable segmenter (boxes -> masks)",
              "model": "a concept segmenter (image + text -> masks)"}


class _ConfigDict:
    """``from_pretrained`` that reads a checkpoint's config.json as a dict (any model_type, known or not)."""

    __name__ = "config.json"

    @staticmethod
    def from_pretrained(name: str, **kwargs: Any) -> dict[str, Any]:
        from transformers import PretrainedConfig

        return PretrainedConfig.get_config_dict(name, **kwargs)[0]


def supported_types(role: str) -> list[str]:
    """The ``model_type`` values served in ``role``, in the table's order."""
    return [t for t, (r, _) in BACKENDS.items() if r == role]


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
    found_role, target = BACKENDS[model_type]
    if found_role != role:
        raise ModelLoadError(f"{what} {name!r} is a {model_type!r} checkpoint, expected {expected} "
                             f"({ROLE_NAMES[role]}); {model_type!r} is {ROLE_NAMES[found_role]}: pass it with "
                             f"--{found_role} (Python: {found_role}=...)")
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


def load_backend(name: str, role: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = False):
    """Load checkpoint ``name`` (Hugging Face name or folder) as the backend of ``role`` its model_type names.

    ``role``: ``"detector"``, ``"segmenter"`` or ``"model"`` (concept segmenter). Raises ModelLoadError for a
    missing checkpoint, an unsupported model_type (listing the supported ones), a checkpoint of another role
    (naming the flag to use) and a backend whose optional packages are missing (naming the extra).
    """
    model_type = checkpoint_model_type(name, role, local_files_only)
    cls = backend_class(model_type, role, name)
    check_requirements(cls, model_type)
    try:
        return cls.from_pretrained(name, device, dtype, local_files_only)
    except ImportError as exc:  # e.g. a processor that exists only as a torchvision class
        raise ModelLoadError(f"{role} model {name!r} ({model_type!r}) needs a package that is not installed "
                             f"({exc}); install the backends extra: {EXTRA_HINT}") from exc
