"""The MCP server: tools over grounded's Python API, resources for runs and ontologies.

:func:`build_server` makes an ``MCPServer`` (the official SDK's high-level server) from a
:class:`Workspace`: the one teacher (:class:`grounded.serve.engine.Engine`: built on first use, one caller at
a time), the roots every path must lie in, the runs this server knows, and the ontologies offered by name.

Tools (each documented in its own schema): ``segment`` and ``models`` here; ``label``, ``run_status``,
``review_queue``, ``export``, ``cancel`` in :mod:`grounded.mcp.runs`; ``train``, ``evaluate``, ``predict`` in
:mod:`grounded.mcp.students`. Bad input is a tool error whose text is the one line ``grounded`` prints after
``grounded: error:`` for the same mistake; an unexpected failure is a tool error naming its type.

Resources: ``grounded://runs`` (the runs this server knows), ``grounded://runs/{run}/summary`` (JSON: the
run's status), ``grounded://runs/{run}/preview`` (PNG: a label run's preview grid, a training run's curve),
``grounded://ontologies/{name}`` (the YAML of each ontology in the prompts folder).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.resources import FileResource
from pydantic import Field

from grounded.config import SegmentOptions
from grounded.errors import GroundedError
from grounded.mcp.schemas import BackendInfo, ModelsResult, SegmentResult
from grounded.mcp.tools import Workspace, add_tool, picture

logger = logging.getLogger(__name__)

INSTRUCTIONS = """grounded: open-vocabulary segmentation on this machine, offline, with the user's own models.
segment(image, prompt) finds and masks what a text prompt names ("car . wheel"); label(images, out, classes)
auto-labels a folder into COCO/YOLO/VOC (poll run_status, then review_queue for the images most needing a
person, export for other formats); train(dataset, out) distils a small student, evaluate and predict use it.
Paths must lie inside the folders the user allowed (models lists them)."""


def register_model_tools(server: MCPServer, ws: Workspace) -> None:
    """``segment`` and ``models``."""

    def segment(
        image: Annotated[str, Field(description="image file (path inside the allowed folders)")],
        prompt: Annotated[str | None, Field(description='what to find: "a wheel", "car . wheel ." or "car, wheel"')] = None,
        ontology: Annotated[str | None, Field(description="instead of a prompt: an ontology name (see models) or a "
                                                          ".yaml path; classes with synonyms")] = None,
        box_threshold: Annotated[float | None, Field(ge=0, le=1, description="keep boxes scoring above this")] = None,
        text_threshold: Annotated[float | None, Field(ge=0, le=1, description="Grounding DINO: matched phrase's "
                                                                               "probability above this")] = None,
        nms: Annotated[str | None, Field(description="class, agnostic or none")] = None,
        nms_iou: Annotated[float | None, Field(ge=0, le=1)] = None,
        max_detections: Annotated[int | None, Field(ge=1)] = None,
        out: Annotated[str | None, Field(description="folder to also write <image>.png and <image>.json to, as "
                                                     "`grounded segment --out` does")] = None,
        show: Annotated[bool, Field(description="attach the annotated picture (long side <= 1024 px)")] = True,
    ) -> SegmentResult:
        """Segment everything a text prompt names in one image: boxes, classes, scores and masks.

        Returns the JSON `grounded segment` writes (boxes XYXY pixels, masks as COCO RLE; in the structured
        content, the text block leaves the masks out) and the annotated picture as image content. The models
        load on the first call; asking again about the same image skips the image encoders."""
        from grounded.io.detections_json import detections_to_json, write_json
        from grounded.utils.images import check_image_file, load_image

        classes = ws.prompt(prompt, ontology)
        options = {k: v for k, v in (("box_threshold", box_threshold), ("text_threshold", text_threshold),
                                     ("nms", nms), ("nms_iou", nms_iou), ("max_detections", max_detections))
                   if v is not None}
        SegmentOptions().updated(**options)  # bad values refused before any model loads
        path = ws.roots.resolve(image, "image", must_exist=False)
        folder = ws.roots.resolve(out, "out", must_exist=False) if out else None
        check_image_file(path)  # a missing, empty or odd file: the message `grounded segment` prints
        pixels = load_image(path)
        tick = time.perf_counter()
        detections, reused = ws.engine.segment(pixels, path.read_bytes(), classes, **options)
        body = detections_to_json(detections, pixels.shape[:2], str(path))
        files = []
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{path.stem}.png").write_bytes(picture(pixels, detections, side=None))
            write_json(body, folder / f"{path.stem}.json")
            files = [str(folder / f"{path.stem}.png"), str(folder / f"{path.stem}.json")]
        result = SegmentResult.model_validate({**body, "classes": classes.class_names, "files": files,
                                               "seconds": round(time.perf_counter() - tick, 3),
                                               "reused_image_encoding": reused})
        brief = {**body, "detections": [{k: v for k, v in d.items() if k != "mask"} for d in body["detections"]]}
        result.with_text(json.dumps(brief, indent=1) + "\n(masks as COCO RLE are in the structured content)")
        return result.attach(picture(pixels, detections)) if show else result

    def models(
        load: Annotated[bool, Field(description="load the teacher now if it is not loaded yet")] = False,
    ) -> ModelsResult:
        """What this server runs: the teacher (loaded or not), what each backend honours, the ontologies
        offered by name, the folders it may use, and the runs it knows."""
        if load:
            with ws.engine.use():
                pass
        predictor = ws.engine.predictor
        backends = []
        if predictor is not None and hasattr(predictor, "backends"):
            from grounded.models.interfaces import describe_backend

            options = list(SegmentOptions.__dataclass_fields__)
            for role, backend in predictor.backends():
                refused = dict(backend.refused_options)
                backends.append(BackendInfo(role=role, **describe_backend(backend), refuses=refused,
                                            honours=[o for o in options if o not in refused]))
        ontologies = {}
        for name in ws.prompts:
            try:
                ontologies[name] = ws.ontology(name).class_names
            except GroundedError as exc:
                logger.warning("not offering ontology %s: %s", name, exc)
        return ModelsResult(loaded=ws.engine.loaded, models=ws.engine.describe(), backends=backends,
                            ontologies=ontologies, roots=[str(r) for r in ws.roots.folders], runs=ws.runs.listing())

    add_tool(server, segment, title="Segment by text")
    add_tool(server, models, title="Models and settings", read_only=True)


def register_resources(server: MCPServer, ws: Workspace, status: Callable[[str], Any]) -> None:
    """Runs (listing, summary, preview) and the ontologies of the prompts folder."""

    @server.resource("grounded://runs", name="runs", mime_type="application/json",
                     description="the runs (output folders) this server knows: id, folder, last job")
    def runs() -> str:
        return json.dumps(ws.runs.listing(), indent=1)

    def known(run: str) -> Path:
        folder = ws.runs.folder(run)
        if folder is None:
            raise ResourceNotFoundError(f"unknown run {run!r}; see grounded://runs (ids come from label / train "
                                        "/ run_status)")
        return folder

    @server.resource("grounded://runs/{run}/summary", name="run summary", mime_type="application/json",
                     description="a run's status: its job, counts, errors, summary.json (as run_status)")
    def run_summary(run: str) -> str:
        known(run)
        return json.dumps(status(run).model_dump(mode="json"), indent=1)

    @server.resource("grounded://runs/{run}/preview", name="run preview", mime_type="image/png",
                     description="a label run's preview grid (preview.png) or a training run's curve")
    def run_preview(run: str) -> bytes:
        folder = known(run)
        for name in ("preview.png", "training_curve.png"):
            if (folder / name).is_file():
                return (folder / name).read_bytes()
        raise ResourceNotFoundError(f"run {run!r} has no preview yet (preview.png or training_curve.png)")

    for name, path in ws.prompts.items():
        server.add_resource(FileResource(
            uri=f"grounded://ontologies/{name}", path=path.resolve(), name=f"ontology {name}",
            mime_type="application/yaml", encoding="utf-8",
            description=f"ontology {name} ({path.name}): classes, synonyms, thresholds; pass ontology={name!r}"))


def http_app(server: MCPServer, host: str = "127.0.0.1", token: str | None = None) -> Any:
    """The streamable HTTP app (path ``/mcp``) with ``grounded serve``'s token rule: when ``token`` is set,
    every request must carry it (``Authorization: Bearer TOKEN`` or ``?token=``); on loopback the SDK also
    refuses other Host / Origin headers (DNS rebinding)."""
    from urllib.parse import parse_qsl

    from starlette.responses import JSONResponse

    from grounded.serve.security import token_matches

    app = server.streamable_http_app(host=host)
    if not token:
        return app

    async def gate(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if not token_matches(token, headers, query, {}):
                reply = JSONResponse({"error": "missing or wrong token: send 'Authorization: Bearer TOKEN'"}, 401)
                await reply(scope, receive, send)
                return
        await app(scope, receive, send)

    return gate


def build_server(ws: Workspace, name: str = "grounded") -> MCPServer:
    """The MCP server over ``ws`` (run it with ``.run("stdio")`` or serve ``.streamable_http_app()``)."""
    from grounded.mcp import runs, students

    server = MCPServer(name, title="grounded", instructions=INSTRUCTIONS, log_level="WARNING")
    register_model_tools(server, ws)
    status = runs.register(server, ws)
    students.register(server, ws)
    register_resources(server, ws, status)
    return server
