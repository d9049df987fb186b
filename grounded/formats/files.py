"""Small file helpers shared by the format writers: atomic writes and image links."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never a half-written file.

    The data is flushed and fsync'ed before the rename, so after a crash or power loss ``path`` holds
    either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def flat_name(relative_path: str) -> str:
    """A unique flat file name for an image path relative to the images root: ``a/b/c.jpg`` -> ``a__b__c.jpg``.

    YOLO, VOC and mask folders are flat, so nested images need names that cannot collide.
    """
    return "__".join(Path(relative_path).parts)


def link_image(source: str | Path, target: str | Path, copy: bool = False) -> None:
    """Make ``target`` show image ``source``: a symbolic link (absolute), or a copy if ``copy`` or links fail."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if not copy:
        try:
            target.symlink_to(Path(source).resolve())
            return
        except OSError:  # e.g. Windows without the privilege
            pass
    shutil.copyfile(source, target)
