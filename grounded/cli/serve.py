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

from grounded.cli.common import add_model_arguments, predictor_from_args
from grounded.errors import InputError
from grounded.serve.admission import DEFAULT_MAX_QUEUE

EXAMPLES = """examples:
  grounded serve                                       # http://127.0.0.1:8000 (API docs: /docs)
  grounded serve --run labelled/                       # + the Review tab over a `grounded label` run
  grounded serve --detector ./gdino --segmenter ./sam --offline --port 8080
  GROUNDED_SERVE_TOKEN=secret grounded serve --host 0.0.0.0   # other machines: open /?token=secret"""


def _default_prompts() -> Path | None:
    import grounded

    folder = Path(grounded.__file__).resolve().parents[1] / "prompts"  # a source checkout's prompts/
    return folder if folder.is_dir() else None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page + REST API: segment by text, review a labelled run",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--run", type=Path, default=None, metavar="OUT", help="a `grounded label` output folder to review")
    p.add_argument("--token", default=None, help="required on every request (default: $GROUNDED_SERVE_TOKEN); "
                                                 "needed to bind anything but 127.0.0.1")
    p.add_argument("--prompts", type=Path, default=None, help="folder of ontology YAML files offered by name "
                                                              "(default: the checkout's prompts/)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest image upload (default %(default)s MB)")
    p.add_argument("--max-megapixels", type=float, default=50.0,
                   help="largest image, width x height, checked before decoding (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE, metavar="N",
                   help="segment requests admitted at once, the running one included; more are answered 503 "
                        "with Retry-After before their upload is read (default %(default)s)")
    p.add_argument("--max-points", type=int, default=64, metavar="N",
                   help="clicks in one POST /v1/segment/points (default %(default)s)")
    p.add_argument("--encoding-cache-mb", type=float, default=1024.0, metavar="MB",
                   help="image encodings kept for more prompts and clicks on the same images (default %(default)s)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.serve import require_serve_extra
    from grounded.serve.security import LOOPBACK_HOSTS, bind_token

    require_serve_extra()
    token = bind_token(args.host, args.token)
    if (args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.max_queue < 1 or args.max_points < 1
            or args.encoding_cache_mb < 0):
        raise InputError("--max-upload-mb, --max-megapixels, --max-queue and --max-points must be positive, "
                         "--encoding-cache-mb at least 0")

    import uvicorn

    from grounded.config import ModelConfig, SegmentOptions
    from grounded.serve.app import Limits, create_app
    from grounded.serve.engine import Engine, probe_backends
    from grounded.serve.runs import RunView

    run_view = RunView(args.run) if args.run is not None else None  # refuses a folder that is not a run
    defaults = SegmentOptions(box_threshold=args.box_threshold, text_threshold=args.text_threshold, nms=args.nms,
                              nms_iou=args.nms_iou, max_detections=args.max_detections)
    config = ModelConfig(detector=args.detector, segmenter=args.segmenter, model=args.model).resolved()
    models = {"model": config.model} if config.model else {"detector": config.detector, "segmenter": config.segmenter}
    engine = Engine(lambda: predictor_from_args(args), models,
                    probe=partial(probe_backends, models, args.local_files_only),
                    cache_bytes=int(args.encoding_cache_mb * 2**20))
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=int(args.max_megapixels * 1e6),
                    max_queue=args.max_queue, max_points=args.max_points)
    app = create_app(engine, run_view, token=token, prompts_dir=args.prompts or _default_prompts(),
                     defaults=defaults, limits=limits,
                     allowed_hosts=None if token else list(LOOPBACK_HOSTS))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"grounded serve: http://{host}:{args.port}/{'?token=...' if token else ''} (API docs: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
