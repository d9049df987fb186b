"""The folders an MCP client may touch: every path it gives must resolve inside one of the ``--root`` folders.

Paths are resolved with symbolic links followed (``os.path.realpath``), so ``..``, absolute paths and links
that lead out of the roots are all refused the same way: :class:`PathRefused`, one line naming the path, the
roots and the fix. A relative path is taken relative to the first root that holds it (else the first root,
for outputs still to be made).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from grounded.errors import InputError, quote


class PathRefused(InputError):
    """A path outside the folders the user let this server use."""


class Roots:
    """The ``--root`` folders (each must exist); :meth:`resolve` checks a client's path against them."""

    def __init__(self, folders: Sequence[str | Path]) -> None:
        if not folders:
            raise InputError("give at least one --root DIR: the folders the MCP client may read and write")
        self.folders: list[Path] = []
        for folder in folders:
            real = Path(os.path.realpath(os.path.expanduser(str(folder))))
            if not real.is_dir():
                raise InputError(f"--root {str(folder)!r} is not a folder; name an existing folder")
            self.folders.append(real)

    def __str__(self) -> str:
        return ", ".join(str(f) for f in self.folders)

    def holds(self, path: Path) -> bool:
        """Whether the resolved ``path`` is one of the roots or lies below one."""
        return any(path.is_relative_to(root) for root in self.folders)

    def resolve(self, path: str | Path, what: str = "path", must_exist: bool = True) -> Path:
        """``path`` (absolute, or relative to a root) as a resolved path inside the roots.

        Raises :class:`PathRefused` when it leads outside them, InputError when ``must_exist`` and it is absent.
        """
        text = str(path).strip()
        if not text or "\x00" in text:
            raise InputError(f"{what} is empty: give a path inside {self}")
        given = Path(os.path.expanduser(text))
        if given.is_absolute():
            candidates = [given]
        else:
            candidates = [root / given for root in self.folders]
            existing = [c for c in candidates if os.path.lexists(c)]
            candidates = existing[:1] or candidates[:1]
        real = Path(os.path.realpath(candidates[0]))
        if not self.holds(real):
            raise PathRefused(f"{what} {quote(text)} is outside the folders this server may use ({self}); give a "
                              "path inside one, or restart `grounded mcp` with another --root")
        if must_exist and not real.exists():
            raise InputError(f"{what} {quote(text)} not found (looked for {real})")
        return real
