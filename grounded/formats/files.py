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


def export_names(relative_paths: list[str]) -> dict[str, str]:
    """Flat, unique export names for images given by their paths relative to the images root.

    Folders become ``__`` (see :func:`flat_name`). YOLO, VOC and mask labels are matched to images by stem,
    so images that would share a stem (``a.jpg`` and ``a.png``) get the extension in it: ``a_jpg.jpg``.
    """
    flat = {rel: flat_name(rel) for rel in relative_paths}
    stems: dict[str, int] = {}
    for name in flat.values():
        stems[Path(name).stem] = stems.get(Path(name).stem, 0) + 1
    out = {}
    for rel, name in flat.items():
        path = Path(name)
        out[rel] = name if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.')}{path.suffix}"
    return out
