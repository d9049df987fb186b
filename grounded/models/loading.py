"""Loading models by Hugging Face name or local folder, with errors that name the model and the fix.

Nothing here runs at import time: device and dtype are resolved when a model is loaded.
"""

from __future__ import annotations

import logging
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from grounded.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


AUTO_DEVICE = "auto"  # the automatic choice spelled out; None means the same


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The project's one device vocabulary, for teachers and students alike: ``None`` or ``"auto"`` -> CUDA
    when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... or a ``torch.device`` as given. A named
    device that is not available is an error."""
    if device is None or device == AUTO_DEVICE:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InputError(f"dtype {dtype!r} not supported; use one of {sorted(set(_DTYPES))}") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the Hugging Face endpoint (``HF_ENDPOINT`` respected); False when offline."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def _fix_hint(name: str, role: str) -> str:
    return (
        f"download it on a machine with network access (`hf download {name} --local-dir DIR`, or "
        f"`from_pretrained(...).save_pretrained(DIR)`), copy DIR here and pass --{role} DIR (Python: {role}=\"DIR\")"
    )


_SUBSET_WARNING = re.compile(r"You are using a model of type `([^`]+)` to instantiate a model of type `([^`]+)`")


class _KnownSubsetWarning(logging.Filter):
    """Drops transformers' "model of type `A` to instantiate a model of type `B`" warning when both A and B are
    types the backend accepts (e.g. ``Sam2Model`` reading a ``sam2_video`` checkpoint's image weights, checked to
    map fully in tests/backends/test_published_shapes.py); every other record passes."""

    def __init__(self, model_types: tuple[str, ...]) -> None:
        super().__init__()
        self.model_types = set(model_types)

    def filter(self, record: logging.LogRecord) -> bool:
        match = _SUBSET_WARNING.match(str(record.msg))
        return not (match and {match[1], match[2]} <= self.model_types)


@contextmanager
def _quiet_known_subset(model_types: tuple[str, ...] | None):
    """While loading, silence only the known-harmless model_type warning of :class:`_KnownSubsetWarning`."""
    if not model_types:
        yield
        return
    config_logger = logging.getLogger("transformers.configuration_utils")
    quiet = _KnownSubsetWarning(model_types)
    config_logger.addFilter(quiet)
    try:
        yield
    finally:
        config_logger.removeFilter(quiet)


def _check_model_type(model: Any, name: str, role: str, model_types: tuple[str, ...] | None) -> Any:
    """Refuse a checkpoint of another architecture: transformers would load it with random weights."""
    found = getattr(getattr(model, "config", None), "model_type", None)
    if model_types and found is not None and found not in model_types:
        raise ModelLoadError(
            f"{role} model {name!r} is a {found!r} checkpoint, expected {' or '.join(map(repr, model_types))}; "
            f"pass a {role} checkpoint to --{role}"
        )
    return model


def load_pretrained(
    loader: Any,
    name: str,
    role: str,
    *,
    local_files_only: bool = False,
    model_types: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``loader.from_pretrained(name)``; on failure raise :class:`ModelLoadError` saying how to fix it.

    A local folder is loaded as is. A hub name is taken from the local cache when it is there; otherwise the
    hub is probed once (a few seconds at most) before downloading, so an offline machine fails at once
    instead of retrying for minutes. ``role`` (``"detector"``, ``"segmenter"``, ...) names the flag that
    points at a local copy. ``model_types``: the config ``model_type`` values accepted (checked after loading
    a model, since transformers fills a mismatched checkpoint with random weights and only logs it); transformers'
    warning that one of them loads into the class of another is silenced (nothing else is).
    """
    with _quiet_known_subset(model_types):
        return _load_pretrained(loader, name, role, local_files_only, model_types, kwargs)


def _load_pretrained(loader: Any, name: str, role: str, local_files_only: bool,
                     model_types: tuple[str, ...] | None, kwargs: dict[str, Any]) -> Any:
    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise ModelLoadError(
                f"{role} model folder {name!r} does not exist; pass a folder made by save_pretrained() "
                f"(config.json + weights) or a Hugging Face name"
            )
        try:
            model = loader.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"{role} model folder {name!r} could not be loaded as {getattr(loader, '__name__', loader)} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); it must hold a save_pretrained() "
                f"checkpoint of the right kind with its processor files"
            ) from exc
        return _check_model_type(model, name, role, model_types)
    try:
        model = loader.from_pretrained(name, local_files_only=True, **kwargs)
        return _check_model_type(model, name, role, model_types)
    except ModelLoadError:
        raise
    except (OSError, ValueError):
        pass  # not cached (or cached incompletely): try the hub below
    if local_files_only or not hub_reachable():
        raise ModelLoadError(
            f"{role} model {name!r} is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline); {_fix_hint(name, role)}"
        )
    try:
        model = loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load {role} model {name!r} from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); check the name, or {_fix_hint(name, role)}"
        ) from exc
    return _check_model_type(model, name, role, model_types)
