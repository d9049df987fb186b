"""``grounded serve``: a web page and a REST API to segment by text and to review a labelled run.

One process (FastAPI + uvicorn; ``pip install "grounded[serve]"``). The models load on the first segment
request, with the same flags and errors as ``grounded segment``. Binds 127.0.0.1; any other address needs a
token (``--token`` or the environment variable GROUNDED_SERVE_TOKEN), checked on every request. At most
``--max-queue`` segment requests are admitted at once; the rest are answered 503 with Retry-After.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from grounded.cli.common import (
    Flags,
    add_model_arguments,
    add_tile_arguments,
    predictor_from_args,
    teacher_kwargs,
    tile_options,
)
from grounded.serve.settings import ServeConfig

EXAMPLES = """examples:
  grounded serve                                       # http://127.0.0.1:8000 (API docs: /docs)
  grounded serve --run labelled/                       # + the Review tab over a `grounded label` run
  grounded serve --detector ./gdino --segmenter ./sam --offline --port 8080
  grounded serve --tile auto     # large images through slices by default (a request may send tile=off / SIZE)
  GROUNDED_SERVE_TOKEN=secret grounded serve --host 0.0.0.0   # other machines: open /?token=secret"""


def _default_prompts() -> Path | None:
    import grounded

    folder = Path(grounded.__file__).resolve().parents[1] / "prompts"  # a source checkout's prompts/
    return folder if folder.is_dir() else None


SERVER = {  # ServeConfig field -> argparse keywords (grounded/cli/common.py's Flags)
    "host": {"help": "address to bind (default %(default)s: this machine only)"},
    "port": {"help": "port (default %(default)s)"},
    "run": {"type": Path, "metavar": "OUT", "help": "a `grounded label` output folder to review"},
    "token": {"help": "required on every request (default: $GROUNDED_SERVE_TOKEN); needed to bind anything but "
                      "127.0.0.1"},
    "prompts": {"type": Path, "help": "folder of ontology YAML files offered by name (default: the checkout's prompts/)"},
    "max_upload_mb": {"help": "largest image upload (default %(default)s MB)"},
    "max_megapixels": {"help": "largest image, width x height, checked before decoding (default %(default)s)"},
    "max_queue": {"metavar": "N", "help": "segment requests admitted at once, the running one included; more are "
                                          "answered 503 with Retry-After before their upload is read (default %(default)s)"},
    "max_points": {"metavar": "N", "help": "clicks in one POST /v1/segment/points (default %(default)s)"},
    "encoding_cache_mb": {"metavar": "MB", "help": "image encodings kept for more prompts and clicks on the same "
                                                   "images (default %(default)s)"},
}
SERVE = Flags("serve_fields", (ServeConfig,), (("server", SERVER),))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page + REST API: segment by text, review a labelled run",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    SERVE.add(p)
    add_model_arguments(p)
    add_tile_arguments(p)  # the default of each POST /v1/segment; tile, tile_overlap, tile_whole per request
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.serve import require_serve_extra
    from grounded.serve.security import LOOPBACK_HOSTS, bind_token

    require_serve_extra()
    settings = ServeConfig(**SERVE.read(args))
    tiling = tile_options(args)  # a bad --tile is refused before anything starts
    token = bind_token(settings.host, settings.token)

    import uvicorn

    from grounded.config import split_kwargs
    from grounded.serve.app import create_app
    from grounded.serve.engine import Engine, probe_backends
    from grounded.serve.runs import RunView

    run_view = RunView(Path(settings.run)) if settings.run is not None else None  # refuses a folder that is not a run
    model_config, defaults = split_kwargs(teacher_kwargs(args))  # every teacher flag: models and default options
    config = model_config.resolved()
    models = {"model": config.model} if config.model else {"detector": config.detector, "segmenter": config.segmenter}
    engine = Engine(lambda: predictor_from_args(args), models,
                    probe=partial(probe_backends, models, config.local_files_only), cache_bytes=settings.cache_bytes)
    prompts = Path(settings.prompts) if settings.prompts is not None else _default_prompts()
    app = create_app(engine, run_view, token=token, prompts_dir=prompts, defaults=defaults, limits=settings.limits,
                     allowed_hosts=None if token else list(LOOPBACK_HOSTS), tiling=tiling)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"grounded serve: http://{host}:{settings.port}/{'?token=...' if token else ''} (API docs: /docs)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0
