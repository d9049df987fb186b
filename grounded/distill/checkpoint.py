"""Saving and loading students: ``NAME.safetensors`` (weights) + ``NAME.json`` (everything to rebuild them).

The JSON holds ``{"format": "grounded-student/1", "student": StudentConfig, "image_size": int, ...}``; extra
keys (training config, data, metrics) are kept as given. ``student.json["student"]["hf_config"]`` holds the
transformers config of SegFormer / backbone students, so loading never needs the network.

A training run folder (``grounded train --out RUN``) contains:

- ``student.safetensors`` / ``student.json``: the best student by validation mIoU (what you deploy);
- ``last.safetensors`` / ``last.json`` + ``train_state.pt``: the latest state, to resume an interrupted run;
- ``history.json``, ``training_curve.png``; after export ``student.onnx``; after evaluation ``eval/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grounded.distill.config import StudentConfig
from grounded.distill.students import Student, build_student
from grounded.errors import InputError, ModelLoadError

FORMAT = "grounded-student/1"


def save_student(student: Student, folder: str | Path, image_size: int, name: str = "student", **extra: Any) -> Path:
    """Write ``folder/name.safetensors`` and ``folder/name.json``; returns the weights' path."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "student": student.config.to_dict(), "image_size": int(image_size), **extra}
    weights = folder / f"{name}.safetensors"
    tmp = weights.with_suffix(".tmp")
    save_model(student, str(tmp))
    tmp.replace(weights)  # atomic: an interrupted save never leaves a torn checkpoint
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2))
    return weights


def read_record(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(the JSON record, the weights path) of a run folder, a ``.safetensors`` or a ``.json`` path."""
    path = Path(path)
    if path.is_dir():
        path = path / "student.safetensors"
    weights = path.with_suffix(".safetensors")
    meta = path.with_suffix(".json")
    if not weights.is_file() or not meta.is_file():
        raise InputError(
            f"no student at {str(path)!r}: expected {weights.name} and {meta.name} (a `grounded train` run folder)"
        )
    record = json.loads(meta.read_text())
    if record.get("format") != FORMAT:
        raise ModelLoadError(f"{meta} is not a grounded student record (format {record.get('format')!r})")
    return record, weights


def load_student(path: str | Path) -> tuple[Student, dict[str, Any]]:
    """Rebuild a saved student (eval mode) and return it with its JSON record."""
    from safetensors.torch import load_model

    record, weights = read_record(path)
    student = build_student(StudentConfig.from_dict(record["student"]), pretrained_weights=False)
    try:
        load_model(student, str(weights))
    except (RuntimeError, OSError) as exc:
        raise ModelLoadError(f"cannot load student weights {weights}: {exc}") from None
    return student.eval(), record
