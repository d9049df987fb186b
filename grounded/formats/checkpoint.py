"""The project's one checkpoint format: ``NAME.safetensors`` (weights) + ``NAME.json`` (a record), and a
resumable training state ``train_state.pt``.

The JSON record is ``{"format": "<kind>/<version>", ...}``: everything needed to rebuild the module offline
(configs) plus whatever the trainer keeps (metrics, data). Both files are written atomically (temporary
file, then rename), so an interrupted save never leaves a torn checkpoint. Students
(``grounded-student/1``) and text-prompt adapters (``grounded-text-adapter/1``) are saved this way; a
reader names the formats it accepts, so older records keep loading.

``train_state.pt`` holds only tensors, numbers, strings, lists and dicts (optimizer state, RNG, step...) and
is read with ``torch.load(weights_only=True)``: loading it runs no pickled code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grounded.errors import InputError, ModelLoadError
from grounded.formats.files import atomic_path, atomic_write_text

STATE = "train_state.pt"


def save_checkpoint(module, folder: str | Path, name: str, record: dict[str, Any]) -> Path:  # noqa: ANN001
    """Write ``folder/name.safetensors`` (``module``'s weights) and ``folder/name.json`` (``record``, which must
    carry ``"format"``); returns the weights' path."""
    from safetensors.torch import save_model

    if "format" not in record:
        raise ValueError("a checkpoint record needs a 'format' key")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_model(module, str(tmp))
    atomic_write_text(folder / f"{name}.json", json.dumps(record, indent=2))
    return weights


def read_checkpoint(path: str | Path, default_name: str, formats: tuple[str, ...], what: str,
                    hint: str) -> tuple[dict[str, Any], Path]:
    """(the JSON record, the weights path) of a folder (``default_name.*`` inside) or of either file.

    ``formats``: the record formats accepted; ``what`` / ``hint`` word the errors ("student", "a `grounded
    train` run folder").
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / f"{default_name}.safetensors"
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise InputError(f"no {what} at {str(path)!r}: expected {weights.name} and {meta.name} ({hint})")
    record = json.loads(meta.read_text())
    if record.get("format") not in formats:
        raise ModelLoadError(f"{meta} is not a {what} record (format {record.get('format')!r}, expected {formats[0]!r})")
    return record, weights


def load_weights(module, weights: str | Path, what: str):  # noqa: ANN001, ANN201
    """Load safetensors ``weights`` into ``module`` (strict); a mismatch is a :class:`ModelLoadError`."""
    from safetensors.torch import load_model

    try:
        load_model(module, str(weights))
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"cannot load {what} weights {weights}: {exc}") from None
    return module


def save_state(folder: str | Path, state: dict[str, Any]) -> Path:
    """Write ``folder/train_state.pt`` atomically (tensors and plain data only)."""
    import torch

    path = Path(folder) / STATE
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(folder: str | Path) -> dict[str, Any] | None:
    """``folder/train_state.pt`` or None when there is none (read with ``weights_only=True``: a file holding
    other objects than tensors and plain data is an InputError, and nothing of it runs)."""
    import pickle

    import torch

    path = Path(folder) / STATE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path} holds objects other than tensors and plain data, so it is not loaded "
                         f"({str(exc).splitlines()[0][:200]}); remove it to start the run over, or use another "
                         "output folder") from None
