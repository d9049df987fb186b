"""Find every entry below an images root that is named like an image, whatever it turns out to be.

A labelling run accounts for each such entry: a record, or an error row saying what the entry is. So the
walk lists not only image files but everything that carries an image extension (any case of jpg, jpeg,
png, bmp, tif, tiff, webp): dangling symbolic links, link loops, folders (and links to folders), named
pipes, sockets, devices. :func:`grounded.utils.images.load_image` then says what each one is (never
opening a pipe, which would block) and the run writes that as the entry's error row.

Folders are searched recursively, a folder named like an image too; links to folders are not followed (as
before). A folder that cannot be listed (permission denied) is logged and skipped: its files are unknown.
Paths are sorted by their parts (``a/b.jpg`` before ``a-b.jpg``), the order the split and the preview
sample are drawn from.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from grounded.utils.images import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


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
