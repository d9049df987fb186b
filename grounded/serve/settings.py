"""``grounded serve``'s settings, declared once: :class:`ServeConfig` (its flags are generated from it,
grounded/cli/serve.py) and :class:`Limits`, what the application enforces (grounded/serve/app.py).

Imports nothing of FastAPI, so the command line can list the flags without the serve extra.
"""

from __future__ import annotations

from dataclasses import dataclass

from grounded.errors import InputError
from grounded.serve.admission import DEFAULT_MAX_QUEUE


@dataclass(frozen=True)
class Limits:
    """What the application refuses beyond (413, or 503 + Retry-After)."""

    max_upload_bytes: int = 25 * 2**20  # one uploaded image file
    max_pixels: int = 50_000_000  # width x height, checked from the header before decoding
    max_queue: int = DEFAULT_MAX_QUEUE  # segment requests admitted at once (running + waiting); more get 503
    max_points: int = 64  # clicks in one POST /v1/segment/points


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens, who may use it, what it reviews and offers, and its limits in the units of
    its flags (the models and their default options are the teacher's flags: grounded/cli/common.py)."""

    host: str = "127.0.0.1"  # address to bind; anything but loopback needs a token
    port: int = 8000
    run: str | None = None  # a `grounded label` output folder to review
    token: str | None = None  # required on every request (None: $GROUNDED_SERVE_TOKEN)
    prompts: str | None = None  # folder of ontology YAML files offered by name (None: the checkout's prompts/)
    max_upload_mb: float = 25.0  # largest image upload
    max_megapixels: float = 50.0  # largest image, width x height, checked before decoding
    max_queue: int = DEFAULT_MAX_QUEUE  # segment requests admitted at once, the running one included
    max_points: int = 64  # clicks in one POST /v1/segment/points
    encoding_cache_mb: float = 1024.0  # image encodings kept for more prompts and clicks on the same images

    def __post_init__(self) -> None:
        if not (self.max_upload_mb > 0 and self.max_megapixels > 0 and self.max_queue >= 1 and self.max_points >= 1
                and self.encoding_cache_mb >= 0):
            raise InputError("--max-upload-mb, --max-megapixels, --max-queue and --max-points must be positive, "
                             "--encoding-cache-mb at least 0")

    @property
    def limits(self) -> Limits:
        return Limits(max_upload_bytes=int(self.max_upload_mb * 2**20), max_pixels=int(self.max_megapixels * 1e6),
                      max_queue=self.max_queue, max_points=self.max_points)

    @property
    def cache_bytes(self) -> int:
        return int(self.encoding_cache_mb * 2**20)
