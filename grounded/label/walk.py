"""Find every entry below an images root that is named like an image, and say which ones cannot be images.

A labelling run accounts for each such entry: a record, or an error row saying what the entry is. So the
walk lists not only image files but everything else that carries an image extension (any case of jpg,
jpeg, png, bmp, tif, tiff, webp)::

    entry                                   problem (the error row's reason)
    regular file, or a link to one          None: decoded and labelled
    dangling symbolic link                  "dangling symbolic link to '<target>' ..."
    symbolic link loop                      "symbolic link loop ..."
    folder, or a link to a folder           "a folder, not an image file ..." (a real folder is still searched)
    named pipe, socket, device              "not a regular file (a named pipe) ..." (never opened: a pipe would block)

Folders are searched recursively; links to folders are not followed (as before). A folder that cannot be
listed (permission denied) is logged and skipped: its files are unknown. Paths are sorted by their parts
(``a/b.jpg`` before ``a-b.jpg``), the order the split and the preview sample are drawn from.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from grounded.utils.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def classify(path: str | os.PathLike) -> str | None:
    """None when ``path`` is (a link to) a regular file; otherwise what it is, as one line for an error row."""
    path = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"dangling symbolic link to {os.readlink(path)!r} (the target does not exist); fix or remove the link"
        return "not found (removed while the run was going?)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself); fix or remove the link"
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        if os.path.islink(path):
            return "a symbolic link to a folder, not an image file (links to folders are not searched)"
        return "a folder, not an image file (the images inside it are searched and labelled)"
    if stat.S_ISREG(info.st_mode):
        return None
    kind = next((name for test, name in _SPECIAL if test(info.st_mode)), "a special file")
    return f"not a regular file ({kind}); it was not opened"


def walk_images(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[str]:
    """Every entry named like an image below ``root`` (see the module docstring), as sorted POSIX paths
    relative to ``root``; nothing at or below ``exclude`` (a run written into its own images folder)."""
    root = os.path.abspath(root)
    skip = os.path.abspath(exclude) if exclude is not None else None
    found: list[tuple[str, ...]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                entries = list(entries)
        except OSError as exc:
            logger.warning("cannot list folder %s (%s); its images are left out", folder, exc.strerror or exc)
            continue
        for entry in entries:
            if skip is not None and (entry.path == skip or entry.path.startswith(skip + os.sep)):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(entry.path)
            if is_image_name(entry.name):
                found.append(Path(os.path.relpath(entry.path, root)).parts)
    return ["/".join(parts) for parts in sorted(found)]
