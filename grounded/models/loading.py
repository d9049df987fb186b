"""Loading models by Hugging Face name or local folder, with errors that name the model and the fix.

Nothing here runs at import time: device and dtype are resolved when a model is loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from grounded.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU. A named device that is not available is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'") from None
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


def load_pretrained(loader: Any, name: str, role: str, *, local_files_only: bool = False, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained(name)``; on failure raise :class:`ModelLoadError` saying how to fix it.

    ``role`` names what the model is for (``"detector"``, ``"segmenter"``, ...) so the message can name the
    command-line flag that points at a local copy.
    """
    path = Path(name).expanduser()
    looks_local = name.startswith((".", "/", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise ModelLoadError(
            f"{role} model folder {name!r} does not exist; pass a folder made by save_pretrained() "
            f"(config.json + weights) or a Hugging Face name"
        )
    try:
        return loader.from_pretrained(str(path) if looks_local else name, local_files_only=local_files_only, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        where = "folder" if looks_local else "Hugging Face model"
        raise ModelLoadError(
            f"could not load {role} {where} {name!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"If this machine is offline, download it elsewhere with "
            f"`huggingface-cli download {name} --local-dir DIR`, copy DIR here and pass --{role} DIR "
            f"(Python: {role}=\"DIR\")"
        ) from exc
