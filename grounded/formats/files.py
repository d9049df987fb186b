"""Small file helpers shared by the format writers: atomic writes, export names, image links, a full disk."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from grounded.errors import DiskFullError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: never a half-written file.

    The data is flushed and fsync'ed before the rename, so after a crash or power loss ``path`` holds
    either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave no half-written temporary behind
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


_ESCAPES = {"%": "%25", "/": "%2F", "\\": "%5C"}  # '%' first, so escaping is reversible
NAME_MAX = 255  # bytes in one file name on common file systems


def flat_name(relative_path: str) -> str:
    """The export name of an image, from its POSIX path relative to the images root; unique and reversible.

    The whole relative path, extension included, becomes the file's *stem*, with ``%``, ``/`` and ``\\``
    percent-escaped, and the original extension is repeated so the file keeps its type::

        a.jpg -> a.jpg.jpg      a.png -> a.png.png      a_jpg.jpg -> a_jpg.jpg.jpg
        sub/a.jpg -> sub%2Fa.jpg.jpg                    sub__a.jpg -> sub__a.jpg.jpg

    YOLO, VOC and mask labels are matched to images by stem (``labels/<stem>.txt``), so distinct paths give
    distinct stems and nothing collides; :func:`relative_from_flat_name` reverses it. A name longer than a
    file system allows (255 bytes) is shortened with a hash of the path (unique, no longer reversible).
    """
    stem = "".join(_ESCAPES.get(c, c) for c in relative_path)
    suffix = Path(relative_path).suffix
    name = stem + suffix
    if len(name.encode("utf-8")) > NAME_MAX:
        digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:16]
        keep = stem.encode("utf-8")[: NAME_MAX - 40].decode("utf-8", "ignore")
        name = f"{keep}~{digest}{suffix}"
    return name


def relative_from_flat_name(name: str) -> str:
    """Inverse of :func:`flat_name` (for names it did not shorten): ``sub%2Fa.jpg.jpg`` -> ``sub/a.jpg``."""
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    return unquote(stem)


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
    """Flat export names (:func:`flat_name`) for images given by their paths relative to the images root.

    Distinct paths always give distinct names and distinct stems. (Paths that differ only in letter case,
    ``x.jpg`` and ``x.JPG``, stay distinct names, as on the file system they came from.)
    """
    return {rel: flat_name(rel) for rel in relative_paths}


def output_stems(paths: list[Path]) -> list[str]:
    """File stems for one output folder, made unique when two inputs share one (``a``, ``a_1``, ...)."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        stems.append(path.stem if n == 0 else f"{path.stem}_{n}")
    return stems


@contextmanager
def disk_full_guard(what: str, intact: str = "") -> Iterator[None]:
    """Turn a full disk (``ENOSPC`` / ``EDQUOT``) inside the block into a :class:`DiskFullError` saying ``what``
    was being written and ``intact`` (what is safe and how to carry on); other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        error = DiskFullError(f"disk full while writing {what}{where}" + (f"; {intact}" if intact else ""))
        error.errno = errno.ENOSPC
        raise error from None
