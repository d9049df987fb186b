"""``grounded mcp --root DIR``: a Model Context Protocol server, so that an agent can segment, label, review
and train on this machine, offline, with your models (``pip install "grounded[mcp]"``).

stdio by default (the agent's client launches this command); ``--transport http`` serves streamable HTTP on
127.0.0.1 (any other --host needs --token, as ``grounded serve``). Every path the client gives must lie
inside a --root folder. The teacher loads once, on first use, with the flags and errors of
``grounded segment``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grounded.cli.common import add_model_arguments, predictor_from_args, teacher_kwargs

EXAMPLES = """examples:
  grounded mcp --root ~/photos --root ~/datasets                      # stdio, for an agent's client
  grounded mcp --root ~/photos --detector ./gdino --segmenter ./sam --offline
  grounded mcp --root ~/photos --transport http --port 8765           # http://127.0.0.1:8765/mcp
  GROUNDED_SERVE_TOKEN=secret grounded mcp --root ~/photos --transport http --host 0.0.0.0

tools: segment, label, run_status, review_queue, export, train, evaluate, predict, models, cancel;
resources: grounded://runs, grounded://runs/{run}/summary|preview, grounded://ontologies/{name}."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="Model Context Protocol server: an agent segments, labels, reviews, trains",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", action="append", type=Path, required=True, metavar="DIR",
                   help="a folder the client may read and write (repeat for more); other paths are refused")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default: launched by the client) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1", help="http: address to bind (default %(default)s: this machine)")
    p.add_argument("--port", type=int, default=8765, help="http: port (default %(default)s)")
    p.add_argument("--token", default=None, help="http: required on every request (default: "
                                                 "$GROUNDED_SERVE_TOKEN); needed to bind anything but 127.0.0.1")
    p.add_argument("--prompts", type=Path, default=None, help="folder of ontology YAML files offered by name "
                                                              "(default: the checkout's prompts/)")
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.cli.serve import _default_prompts
    from grounded.mcp import require_mcp_extra
    from grounded.serve.security import bind_token

    require_mcp_extra()
    token = bind_token(args.host, args.token) if args.transport == "http" else None

    from grounded.config import ModelConfig
    from grounded.mcp.server import build_server, http_app
    from grounded.mcp.tools import Workspace
    from grounded.serve.engine import Engine

    chosen = ModelConfig(**{k: v for k, v in teacher_kwargs(args).items() if k in ("detector", "segmenter", "model")})
    chosen = chosen.resolved()  # what will load (reported by the models tool before it does)
    named = {"model": chosen.model} if chosen.model else {"detector": chosen.detector, "segmenter": chosen.segmenter}
    engine = Engine(lambda: predictor_from_args(args), named)
    server = build_server(Workspace.create(engine, args.root, args.prompts or _default_prompts()))
    if args.transport == "stdio":
        server.run("stdio")  # stdout carries the protocol: nothing else may print there
        return 0
    import uvicorn

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"grounded mcp: http://{host}:{args.port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(http_app(server, args.host, token), host=args.host, port=args.port, log_level="warning")
    return 0
