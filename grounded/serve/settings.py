"""``grounded serve``'s settings, declared once: :class:`ServeConfig` (its flags are generated from it,
grounded/cli/serve.py) and :class:`Limits`, what the application enforces (grounded/serve/app.py).

Tiled inference (:class:`grounded.config.TileOptions`): the server's default is its ``--tile*`` flags, and a
``POST /v1/segment`` may set the fields :func:`request_tile_fields` lists (all but ``SERVER_TILING``'s) as form
fields, read by :func:`request_tiling`; their descriptions are the flags' help (grounded/cli/common.py).

Imports nothing of FastAPI, so the command line can list the flags without the serve extra.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from grounded.config import TILE_HELP, TileOptions
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


TILE_OFF = ("off", "none")  # a request's ``tile`` for no tiling (TileOptions.tile=None), any case
SERVER_TILING = {  # TileOptions field -> why a request cannot set it (the server's own flag sets it)
    "tile_batch": "bounds the server's memory, not results: `grounded serve --tile-batch N`",
}


def request_tile_fields(server: TileOptions) -> dict[str, tuple[type, str]]:
    """TileOptions field -> (form type, description) for each field a ``POST /v1/segment`` may set; the
    description is the flag's help with ``server``'s value (this server's default) in place of the flag's."""
    out = {}
    for field in fields(TileOptions):
        if field.name in SERVER_TILING:
            continue
        spec = TILE_HELP[field.name]
        # the flag's "(default ...)" is not this server's default: that is named at the end
        text = re.sub(r"\s*\(default(?:%\(default\)s|[^)])*\)", "", spec["help"])
        if spec.get("flag", "").startswith("--no-"):  # a switch that turns the field off
            text = f"false: {text}"
        if field.name == "tile":
            text += f"; {TILE_OFF[0]}: not tiled"
        default = getattr(server, field.name)
        kind = type(field.default) if field.default is not None else str
        out[field.name] = (kind, f"{text} (this server's default: {TILE_OFF[0] if default is None else default})")
    return out


def request_tiling(server: TileOptions, given: dict[str, Any]) -> TileOptions:
    """``server``'s TileOptions with a request's fields over it (None: not given; ``tile`` "off": no tiling).
    A bad value is TileOptions' InputError, naming the field and what it accepts (a 400)."""
    unknown = sorted(set(given) - set(request_tile_fields(server)))
    if unknown:
        raise InputError(f"{unknown} cannot be set per request; " + "; ".join(SERVER_TILING.get(k, "unknown field")
                                                                             for k in unknown))
    given = {k: v for k, v in given.items() if v is not None}
    if isinstance(given.get("tile"), str) and given["tile"].strip().lower() in TILE_OFF:
        given["tile"] = None
    return replace(server, **given)
