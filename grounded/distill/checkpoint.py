"""Saving and loading students in the project's checkpoint format (:mod:`grounded.formats.checkpoint`):
``NAME.safetensors`` (weights) + ``NAME.json`` (everything to rebuild them).

The JSON holds ``{"format": "grounded-student/1", "student": StudentConfig, "image_size": int, ...}``; extra
keys (training config, data, metrics) are kept as given. ``student.json["student"]["hf_config"]`` holds the
transformers config of transformers-based students, so loading never needs the network. Records written
before the boundary head existed load as students without it.

A training run folder (``grounded train --out RUN``) contains:

- ``student.safetensors`` / ``student.json``: the best student by validation mIoU (what you deploy);
- ``last.safetensors`` / ``last.json`` + ``train_state.pt``: the latest state, to resume an interrupted run;
- ``history.json``, ``training_curve.png``; after export ``student.onnx``; after evaluation ``eval/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grounded.distill.config import StudentConfig
from grounded.distill.students import Student, build_student
from grounded.formats.checkpoint import load_state, load_weights, read_checkpoint, save_checkpoint, save_state

FORMAT = "grounded-student/1"
__all__ = ["FORMAT", "save_student", "read_record", "load_student", "save_state", "load_state"]


def save_student(student: Student, folder: str | Path, image_size: int, name: str = "student", **extra: Any) -> Path:
    """Write ``folder/name.safetensors`` and ``folder/name.json``; returns the weights' path."""
    record = {"format": FORMAT, "student": student.config.to_dict(), "image_size": int(image_size), **extra}
    return save_checkpoint(student, folder, name, record)


def read_record(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(the JSON record, the weights path) of a run folder, a ``.safetensors`` or a ``.json`` path."""
    return read_checkpoint(path, "student", (FORMAT,), "student", "a `grounded train` run folder")


def load_student(path: str | Path) -> tuple[Student, dict[str, Any]]:
    """Rebuild a saved student (eval mode) and return it with its JSON record."""
    record, weights = read_record(path)
    student = build_student(StudentConfig.from_dict(record["student"]), pretrained_weights=False)
    load_weights(student, weights, "student")
    return student.eval(), record
