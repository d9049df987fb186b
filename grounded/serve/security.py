"""What the server refuses: unknown callers, files outside the run, oversized or undecodable uploads.

- Token: any address but loopback needs one (:func:`bind_token`, also used by ``grounded mcp``). When the
  server has one, every request must carry it, as ``Authorization: Bearer TOKEN``, a ``?token=TOKEN`` query
  parameter (for the first page load) or the ``grounded_token`` cookie the server sets after a
  query-parameter login (so the page's images and ``/docs`` work). Compared in constant time.
- Paths: :func:`resolve_inside` turns a client's relative path into a file inside a root, refusing absolute
  paths, ``..``, and symbolic links that lead out of the root (checked on the resolved path).
- Uploads: :func:`decode_upload` refuses more than ``max_bytes``, undecodable data, and images of more than
  ``max_pixels`` pixels *before* decoding them (a decompression bomb is a small file of huge dimensions).
"""

from __future__ import annotations

import hmac
import io
import os
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from grounded.errors import InputError

TOKEN_COOKIE = "grounded_token"
TOKEN_ENV = "GROUNDED_SERVE_TOKEN"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Refused(InputError):
    """A request refused for what it asks (status 403, 404, 413 ...), with one clear message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def bind_token(host: str, token: str | None) -> str | None:
    """The token a server bound to ``host`` requires: ``token``, else $GROUNDED_SERVE_TOKEN, else none.

    Loopback addresses need none; any other address without one is refused (InputError naming the fix)."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in LOOPBACK_HOSTS and not token:
        raise InputError(f"--host {host} would let other machines in: give --token TOKEN (or set {TOKEN_ENV}), "
                         "or keep the default --host 127.0.0.1")
    return token


def token_matches(expected: str, headers: dict[str, str], query: dict[str, str], cookies: dict[str, str]) -> bool:
    """Whether the request carries ``expected`` in its Authorization header, ``token`` query or cookie."""
    auth = headers.get("authorization", "")
    candidates = [auth[7:] if auth.lower().startswith("bearer ") else "", query.get("token", ""),
                  cookies.get(TOKEN_COOKIE, "")]
    return any(c and hmac.compare_digest(c.encode(), expected.encode()) for c in candidates)


def resolve_inside(root: str | Path, relative: str) -> Path:
    """``root / relative`` as a resolved path that stays inside ``root`` (Refused 403 otherwise, 404 if absent)."""
    if not relative or relative.startswith(("/", "\\")) or "\\" in relative or "\x00" in relative:
        raise Refused(f"path {relative!r} refused: give a path relative to the images root", 403)
    parts = PurePosixPath(relative).parts
    if any(p in ("..", ".") for p in parts) or (parts and ":" in parts[0]):
        raise Refused(f"path {relative!r} refused: '..' and drive names are not allowed", 403)
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(real_root / relative))
    if not target.is_relative_to(real_root):
        raise Refused(f"path {relative!r} refused: it leads outside the images root (a symbolic link?)", 403)
    if not target.is_file():
        raise Refused(f"image {relative!r} not found in the images root", 404)
    return target


def megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def decode_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> RGB uint8 (H, W, 3); Refused 413 when too big, 400 when not an image."""
    from grounded.utils.images import load_image

    if len(data) > max_bytes:
        raise Refused(f"upload {name!r} is larger than the limit of {megabytes(max_bytes)}", 413)
    if not data:
        raise Refused(f"upload {name!r} is empty (0 bytes); choose an image file")
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as pil:  # reads the header only
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by our own limit
            width, height = pil.size
            if width * height > max_pixels:
                raise Refused(f"image {name!r} is {width}x{height} = {width * height / 1e6:.1f} Mpixels; the limit is "
                              f"{max_pixels / 1e6:.1f} Mpixels (resize it first)", 413)
            pil.load()
            image = load_image(pil, name=name)
            return image if image.flags.writeable else image.copy()
    except Refused:
        raise
    except UnidentifiedImageError:
        raise Refused(f"upload {name!r} is not an image file (unknown format); send a JPEG, PNG, WebP, ...") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Refused(f"upload {name!r} cannot be decoded ({exc}); is the file complete?") from None
