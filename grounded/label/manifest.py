"""``OUT/run.json``: what a labelling run is (images root, ontology, model), checked on every resume.

The file holds no time stamps, so two runs with equal settings write equal bytes. Fields::

    {"format_version": 1, "images_root": "/abs/images", "classes": ["car", ...],
     "ontology": {...}, "ontology_fingerprint": "sha256", "model": {predictor.describe()},
     "model_fingerprint": "sha256", "split": {"train": 0.8, "val": 0.2}, "seed": 0}

plus ``"soft_masks": {"folder": "soft", "side": 256, ...}`` only when the run stores the teacher's soft masks
(:mod:`grounded.label.soft`; a run without them writes the same bytes as before they existed).

Resuming with another images root, ontology or model is refused (the dataset would silently mix two
settings) unless ``force=True``, which discards the finished records (and soft masks) and starts over. The
split and seed only shape the exports, which are rebuilt from the records on every run; changing them is
allowed, as is turning soft masks on or off (the entry says what the latest run stores).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from grounded.errors import InputError
from grounded.formats.files import atomic_write_text
from grounded.label.records import RECORDS_DIR
from grounded.label.soft import SOFT_DIR
from grounded.ontology import Ontology

logger = logging.getLogger(__name__)

MANIFEST = "run.json"
LOCK = ".lock"
FORMAT_VERSION = 1
_IDENTITY = ("images_root", "ontology_fingerprint", "model_fingerprint")


def fingerprint(value: Any) -> str:
    """sha256 of the canonical JSON form of ``value`` (sorted keys; unknown types by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def build_manifest(
    images_root: Path, ontology: Ontology, model: dict[str, Any], split: dict[str, float], seed: int,
    soft_masks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``run.json``'s content; ``soft_masks``: the entry naming the soft files (None: the run stores none)."""
    return {
        "format_version": FORMAT_VERSION,
        "images_root": os.path.abspath(images_root),
        "classes": ontology.class_names,
        "ontology": ontology.to_dict(),
        "ontology_fingerprint": ontology.fingerprint(),
        "model": json.loads(json.dumps(model, sort_keys=True, default=str)),
        "model_fingerprint": fingerprint(model),
        "split": split,
        "seed": int(seed),
        **({"soft_masks": soft_masks} if soft_masks else {}),
    }


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``OUT/.lock`` while a run or an export writes ``out``.

    Two runs writing one folder would undo each other's exports; the second is refused instead. The
    lock (``flock``) dies with its process, so a killed run never leaves ``out`` locked. No-op where
    ``fcntl`` does not exist (Windows).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{str(out)!r} is being written by another `grounded label` or `grounded export`; "
                "wait for it to finish or use another --out"
            ) from None
        yield


def read_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise InputError(f"{str(out)!r} is not a labelling run: {MANIFEST} is missing; run `grounded label` first")
    return json.loads(path.read_text(encoding="utf-8"))


def start_run(out: Path, manifest: dict[str, Any], force: bool = False) -> bool:
    """Create or check ``OUT/run.json``; return True when finished records from before are kept (resume).

    Raises InputError naming what changed when the run exists with another identity and not ``force``.
    """
    out = Path(out)
    path = out / MANIFEST
    resumed = False
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [key for key in _IDENTITY if old.get(key) != manifest[key]]
        if changed and not force:
            details = "; ".join(_describe_change(key, old, manifest) for key in changed)
            raise InputError(
                f"{str(out)!r} holds a run with other settings ({details}); its records would mix with this run's. "
                "Use another --out, or --force to discard the finished images and start over"
            )
        if changed:
            logger.warning("--force: discarding the finished records in %s (%s changed)", out, ", ".join(changed))
            shutil.rmtree(out / RECORDS_DIR, ignore_errors=True)
            shutil.rmtree(out / SOFT_DIR, ignore_errors=True)
        else:
            resumed = True
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    return resumed


def _describe_change(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    if key == "images_root":
        return f"images root was {old.get(key)!r}, now {new[key]!r}"
    if key == "ontology_fingerprint":
        return f"ontology was classes {old.get('classes')}, now {new['classes']} (or their phrases/thresholds changed)"
    return f"model was {json.dumps(old.get('model'), sort_keys=True)}, now {json.dumps(new['model'], sort_keys=True)}"
