"""Small file helpers shared by the format writers: the one atomic write, export names, image links, a full disk."""

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


def temporary_path(path: str | Path) -> Path:
    """The temporary file beside ``path`` that :func:`atomic_path` writes first (``.NAME.PID.tmp``: hidden,
    per process, and found by a clean-up that looks for ``.*.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def commit_file(tmp: str | Path, path: str | Path) -> None:
    """Flush ``tmp`` to the disk (fsync), then rename it over ``path`` (``os.replace``, atomic on one file
    system): after a crash or power loss ``path`` holds either its old content or all of the new."""
    fd = os.open(tmp, os.O_RDWR)  # a writable handle: Windows' fsync (_commit) needs one
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """The project's one atomic write: yield a temporary path in ``path``'s folder for any writer that takes
    a path (``open``, ``torch.save``, safetensors, ONNX, PIL, matplotlib: give them the format, the name
    ends in ``.tmp``); leaving the block commits it (:func:`commit_file`: fsync, then rename over ``path``),
    an exception removes it (e.g. a full disk: no half-written temporary is left behind). ``path`` never
    holds a partial file. The folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (:func:`atomic_path`)."""
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
