"""The FastAPI application: REST endpoints, the static page, and the rules every request goes through.

Endpoints (OpenAPI at ``/docs``)::

    GET  /                       the page (grounded/serve/static/)
    GET  /v1/health              {"status": "ok", "models_loaded", "busy", "run", "in_flight", "queued",
                                 "capacity", "turned_away"} (segment requests; grounded.serve.admission)
    GET  /v1/models              the models (described; loaded or not), the options they honour (with defaults)
                                 and those they refuse (why), ontologies, limits
    POST /v1/segment             multipart: image + prompt | ontology (+ thresholds, nms ..., tile, tile_overlap,
                                 tile_whole) -> the JSON of `grounded segment` (boxes XYXY pixels, masks as COCO RLE
                                 at the image's full size) + image_id, tiling, or output=png
    POST /v1/segment/points      multipart: image | image_id, points [[x, y], ...], labels [1, 0, ...] (+ box,
                                 mask_id, mask) -> one mask in the same JSON + image_id, mask_id (clicks)
    GET  /v1/run                 the run under review (--run OUT): classes, images root
    GET  /v1/run/images          every image: status (labelled / missing / error), class ids, scores, review
    GET  /v1/run/record?file=    one image's detections (segment's JSON schema) + its review
    GET  /v1/run/image?file=     the image itself (only images of the run, inside its images root)
    GET  /v1/run/queue           the images most needing a person (grounded.label.queue), most doubtful first
    PUT  /v1/run/review?file=    JSON {"revision", "by", "reviewed", "detections": {index: {"status", "class_id",
                                 "mask"}}, "added": [...]} (grounded.label.reviews); 409 + the current one

Errors are JSON ``{"detail": "one clear message"}``: 400 bad input, 401 no/wrong token, 403 path refused,
404 not found, 413 too large, 422 malformed form fields, 501 clicks without a segmenter that takes them,
503 models cannot be loaded, or 503 with
``Retry-After`` when ``max_queue`` segment requests are already in flight (answered before the upload is
read); an unexpected error is a 500 with its type and message, never a traceback (that goes to the server's log).
"""

from __future__ import annotations

import inspect
import io
import logging
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from grounded.config import NMS_MODES, SegmentOptions, TileOptions
from grounded.errors import GroundedError, ModelLoadError, OrderError
from grounded.io.detections_json import detections_to_json
from grounded.label.reviews import ReviewConflict
from grounded.ontology import Ontology
from grounded.serve.admission import Admission
from grounded.serve.cache import image_key
from grounded.serve.clicks import POINTS_EXAMPLE, describe_clicks, json_field, one_mask
from grounded.serve.engine import Engine
from grounded.serve.runs import RunView
from grounded.serve.security import TOKEN_COOKIE, Refused, decode_upload, megabytes, token_matches
from grounded.serve.settings import Limits, request_tile_fields, request_tiling

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SEGMENT_PATH = "/v1/segment"
POINTS_PATH = "/v1/segment/points"
# The option fields of POST /v1/segment (SegmentOptions fields, typed as there), with the bounds its form checks
# (422 beyond them); GET /v1/models lists those the models honour, with this server's defaults, and the page builds
# its controls from that list. Values are then checked by SegmentOptions itself, as for every other caller.
REQUEST_OPTIONS: dict[str, dict[str, Any]] = {
    "box_threshold": {"min": 0.0, "max": 1.0, "description": "for every class"},
    "text_threshold": {"min": 0.0, "max": 1.0, "description": "for every class"},
    "nms": {"choices": list(NMS_MODES), "description": ", ".join(NMS_MODES)},
    "nms_iou": {"min": 0.0, "max": 1.0, "description": "IoU above which the lower-scored box is dropped"},
    "max_detections": {"min": 1, "description": "per image, highest confidence first"},
}


def _status(exc: GroundedError) -> int:
    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, ModelLoadError):
        return 503
    if isinstance(exc, OrderError):
        return 409
    return 400


def list_ontologies(prompts_dir: Path | None) -> dict[str, Ontology]:
    """Ontology name (file stem) -> Ontology, for the YAML files directly in ``prompts_dir`` (broken ones skipped)."""
    if prompts_dir is None or not Path(prompts_dir).is_dir():
        return {}
    found = {}
    for path in sorted(Path(prompts_dir).iterdir()):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                found[path.stem] = Ontology.from_yaml(path)
            except GroundedError as exc:
                logger.warning("not offering ontology %s: %s", path, exc)
    return found


def create_app(engine: Engine | None, run: RunView | None = None, *, token: str | None = None,
               prompts_dir: Path | None = None, defaults: SegmentOptions | None = None,
               limits: Limits | None = None, allowed_hosts: list[str] | None = None,
               tiling: TileOptions | None = None) -> FastAPI:
    """The application. ``engine`` None: no models (review only); ``run`` None: no review endpoints;
    ``tiling``: the default of a segment request's tiling (None: off; grounded/serve/settings.py)."""
    app = FastAPI(title="grounded", summary="Segment by text; review a labelled run.", version="1")
    limits = limits or Limits()
    admission = Admission(limits.max_queue)
    _guard(app, engine, admission, limits, token, allowed_hosts)
    _answer_errors(app)
    _serve_page(app)
    _model_routes(app, engine, admission, limits, defaults or SegmentOptions(), list_ontologies(prompts_dir),
                  reviewing=run is not None, tiling=tiling or TileOptions())
    _run_routes(app, run)
    return app


def _guard(app: FastAPI, engine: Engine | None, admission: Admission, limits: Limits, token: str | None,
           allowed_hosts: list[str] | None) -> None:
    """What every request passes first: the host, the token, the upload size, and admission to /v1/segment."""

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next):
        if allowed_hosts and request.headers.get("host", "").rsplit(":", 1)[0].strip("[]") not in allowed_hosts:
            return JSONResponse({"detail": "host not allowed: use http://127.0.0.1:PORT"}, status_code=400)
        if token and not token_matches(token, dict(request.headers), dict(request.query_params), request.cookies):
            return JSONResponse({"detail": "missing or wrong token: open the page as /?token=TOKEN or send "
                                           "'Authorization: Bearer TOKEN'"}, status_code=401)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limits.max_upload_bytes + 2**16:
            return JSONResponse({"detail": f"request of {megabytes(int(length))} refused; uploads are limited "
                                           f"to {megabytes(limits.max_upload_bytes)}"}, status_code=413)
        admitted = request.method == "POST" and request.url.path in (SEGMENT_PATH, POINTS_PATH)
        if admitted and not admission.enter():  # before the body is read: a refused upload costs no memory
            wait = admission.retry_after(engine.seconds if engine else None)
            return JSONResponse({"detail": f"busy: {admission.in_flight} segment requests are in flight, the most "
                                           f"this server admits (--max-queue); retry in {wait} s"},
                                status_code=503, headers={"Retry-After": str(wait)})
        try:
            response = await call_next(request)
        finally:
            if admitted:
                admission.leave()
        if token and request.query_params.get("token") and request.cookies.get(TOKEN_COOKIE) != token:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response


def _answer_errors(app: FastAPI) -> None:
    """Every error as JSON ``{"detail": one message}`` with its status (the module docstring lists them)."""

    @app.exception_handler(GroundedError)
    async def grounded_error(request: Request, exc: GroundedError):
        return JSONResponse({"detail": str(exc)}, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}: {exc}); see the server log"},
                            status_code=500)


def _serve_page(app: FastAPI) -> None:
    """The page and its static files."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _model_routes(app: FastAPI, engine: Engine | None, admission: Admission, limits: Limits,
                  defaults: SegmentOptions, ontologies: dict[str, Ontology], reviewing: bool,
                  tiling: TileOptions) -> None:
    """GET /v1/health, GET /v1/models and POST /v1/segment (``tiling``: the server's default TileOptions)."""
    tile_fields = request_tile_fields(tiling)

    def refused() -> dict[str, str] | None:
        return engine.refused() if engine is not None else {}

    def clicks() -> dict[str, Any]:
        return engine.clicks() if engine is not None else describe_clicks([])

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        busy = bool(engine and engine.busy)
        return {"status": "ok", "models_loaded": bool(engine and engine.loaded), "busy": busy,
                "run": reviewing, **admission.report(running=busy),
                "encoding_cache": engine.cache.report() if engine else None}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "available": engine is not None, "loaded": bool(engine and engine.loaded),
            "models": engine.describe() if engine else {},
            "options": {name: {"default": getattr(defaults, name), **spec}
                        for name, spec in REQUEST_OPTIONS.items() if name in _honoured(refused())},
            "refused": refused(),  # option -> why; None: not known until the models load (then all are offered)
            "clicks": clicks(),  # whether POST /v1/segment/points is served, and by which segmenter
            "ontologies": {name: ontology.class_names for name, ontology in ontologies.items()},
            "tiling": {name: {"default": getattr(tiling, name), "description": text}  # POST /v1/segment's fields
                       for name, (_, text) in tile_fields.items()},
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
                       "max_queue": limits.max_queue, "max_points": limits.max_points},
        }

    @app.post(SEGMENT_PATH, responses={200: {"content": {"image/png": {}}}})
    def segment(
        image: Annotated[UploadFile, File(description="the image (JPEG, PNG, WebP, ...)")],
        prompt: Annotated[str, Form(description='what to find: "a wheel", "car . wheel ." or "car, wheel"')] = "",
        ontology: Annotated[str, Form(description="name of an ontology from GET /v1/models (instead of a prompt)")] = "",
        given: dict[str, Any] = Depends(_options_form()),  # noqa: B008  (REQUEST_OPTIONS' fields: box_threshold, ...)
        output: Annotated[str, Form(description="json (default) or png (annotated image)")] = "json",
        tiles: TileOptions = Depends(_tiling_form(tiling)),  # noqa: B008  (the form fields tile, tile_overlap, ...)
    ) -> Any:
        """Segment what the prompt (or ontology) names; same JSON as `grounded segment`, masks at the image's
        full size. ``tile``: large images through overlapping slices (grounded/pipeline/tiled.py)."""
        if engine is None:
            raise Refused("this server has no models", 503)
        if output not in ("json", "png"):
            raise Refused(f"output must be json or png, got {output!r}")
        classes = _ontology(prompt, ontology)
        options = {k: v for k, v in given.items() if k not in ("box_threshold", "text_threshold")}
        for kind in ("box", "text"):  # a threshold given applies to every class, over the ontology's own ones too
            if (value := given.get(f"{kind}_threshold")) is not None:
                options[f"{kind}_threshold"] = value
                own = getattr(classes, f"{kind}_threshold_for")
                overridden = {c.name: value for i, c in enumerate(classes.classes) if own(i, None) is not None}
                if overridden:  # never invented: a backend without that threshold refuses any per-class value
                    options[f"class_{kind}_thresholds"] = overridden
        SegmentOptions().updated(**options)  # bad values are refused before any model loads
        data = image.file.read(limits.max_upload_bytes + 1)
        name = image.filename or "upload"
        array = decode_upload(data, name, limits.max_upload_bytes, limits.max_pixels)
        tick = time.perf_counter()
        detections, reused = engine.segment(array, data, classes, tiling=tiles, **options)
        if output == "png":
            from grounded.io.annotate import annotate

            buffer = io.BytesIO()
            annotate(array, detections).save(buffer, format="PNG")
            return Response(buffer.getvalue(), media_type="image/png")
        body = detections_to_json(detections, array.shape[:2], name)
        body.update(classes=classes.class_names, seconds=round(time.perf_counter() - tick, 3),
                    reused_image_encoding=reused, image_id=image_key(data),
                    options=_applied(defaults, options, refused()),
                    tiling={**{name: getattr(tiles, name) for name in tile_fields},
                            "slices": engine.slices(array.shape[:2], tiles)})
        return body

    @app.post(POINTS_PATH, responses={200: {"description": "one mask, in the JSON of POST /v1/segment",
                                            "content": {"application/json": {"example": POINTS_EXAMPLE}}}})
    def segment_points(
        image: Annotated[UploadFile | None, File(description="the image; or give image_id instead")] = None,
        image_id: Annotated[str, Form(description="image_id of an earlier answer (its encoding is reused)")] = "",
        points: Annotated[str, Form(description="JSON [[x, y], ...] in pixels of the image",
                                    examples=["[[212, 140], [260, 190]]"])] = "[]",
        labels: Annotated[str, Form(description="JSON [1, 0, ...]: 1 foreground, 0 background, one per point",
                                    examples=["[1, 0]"])] = "[]",
        box: Annotated[str, Form(description="JSON [x0, y0, x1, y1] in pixels (optional)",
                                 examples=["[150, 90, 330, 260]"])] = "",
        mask_id: Annotated[str, Form(description="mask_id of the answer being refined (its logits are the prior)")] = "",
        mask: Annotated[str, Form(description="JSON COCO RLE of an existing mask being fixed (the prior when no "
                                              "mask_id)")] = "",
    ) -> dict[str, Any]:
        """Clicks on one object -> its mask (only the prompt encoder and mask decoder run on a cached image).

        Send the image once (or its ``image_id``), then each click with all the object's points so far and the
        previous answer's ``mask_id``: SAM's iterative refinement."""
        if engine is None:
            raise Refused("this server has no models", 503)
        clicks_xy, click_labels = json_field("points", points, []), json_field("labels", labels, [])
        if isinstance(clicks_xy, list) and len(clicks_xy) > limits.max_points:
            raise Refused(f"{len(clicks_xy)} points refused; at most {limits.max_points} per request", 413)
        array, name, key = None, "image", image_id.strip()
        if image is not None:
            data = image.file.read(limits.max_upload_bytes + 1)
            name, key = image.filename or "upload", image_key(data)
            array = decode_upload(data, name, limits.max_upload_bytes, limits.max_pixels)
        elif not key:
            raise Refused("send the image, or the image_id of an earlier answer")
        prior = json_field("mask", mask, None, limits.max_upload_bytes) if not mask_id else None
        tick = time.perf_counter()
        answer, new_id, reused = engine.click(key, array, clicks_xy, click_labels, json_field("box", box, None),
                                              mask_id.strip() or None, prior)
        found = one_mask(answer.mask, answer.score)
        body = detections_to_json(found, answer.mask.shape, name)
        body.update(image_id=key, mask_id=new_id, seconds=round(time.perf_counter() - tick, 3),
                    reused_image_encoding=reused)
        return body

    def _ontology(prompt: str, name: str) -> Ontology:
        if prompt.strip() and name:
            raise Refused("give a prompt or an ontology, not both")
        if name:
            if name not in ontologies:
                raise Refused(f"unknown ontology {name!r}; choose from {sorted(ontologies)}", 404)
            return ontologies[name]
        if not prompt.strip():
            raise Refused('empty prompt: type what to find (e.g. "a wheel" or "car . wheel .") or pick an ontology')
        return Ontology.from_prompt(prompt)


def _run_routes(app: FastAPI, run: RunView | None) -> None:
    """The review of a labelled run (GET /v1/run, /v1/run/images, /v1/run/record, /v1/run/image; PUT /v1/run/review)."""

    def _run() -> RunView:
        if run is None:
            raise Refused("no run is being reviewed: start the server with --run OUT (a `grounded label` folder)", 404)
        return run

    @app.get("/v1/run")
    def run_info() -> dict[str, Any]:
        return _run().info()

    @app.get("/v1/run/images")
    def run_images() -> list[dict[str, Any]]:
        return _run().images()

    @app.get("/v1/run/record")
    def run_record(file: Annotated[str, Query(description="image path relative to the images root")]) -> dict[str, Any]:
        return _run().record(file)

    @app.get("/v1/run/image", response_class=FileResponse)
    def run_image(file: Annotated[str, Query(description="image path relative to the images root")]) -> FileResponse:
        return FileResponse(_run().image_path(file))

    @app.get("/v1/run/queue")
    def run_queue(limit: Annotated[int, Query(ge=1, le=10000)] = 50,
                  include_reviewed: Annotated[bool, Query()] = False) -> list[dict[str, Any]]:
        """The images most needing a person, most doubtful first (grounded/label/queue.py; as `grounded review-queue`)."""
        return _run().queue(limit, include_reviewed)

    @app.put("/v1/run/review", responses={409: {"description": "edited meanwhile: {detail, current}"}})
    async def run_review(request: Request, file: Annotated[str, Query()]) -> Any:
        """Save one image's review (JSON body with the ``revision`` it was made on and who made it, ``by``; see
        grounded/label/reviews.py). The model's record is not touched. 409 with the current review when someone
        saved another revision meanwhile."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise Refused("send the review as JSON (Content-Type: application/json)", 415)
        try:
            body = await request.json()
        except ValueError:
            raise Refused("the review is not valid JSON") from None
        try:
            return _run().save_review(file, body)
        except ReviewConflict as exc:
            return JSONResponse({"detail": str(exc), "current": exc.current}, status_code=409)


def _form_fields(read: Callable[..., Any], fields: dict[str, tuple[Any, Any]]) -> Callable[..., Any]:
    """``read(**given)`` as a FastAPI dependency with one optional form field per ``fields`` entry (name ->
    (type, ``Form(...)``)), so FastAPI parses and bounds them and OpenAPI documents them; absent ones are None."""
    read.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, form])
        for name, (kind, form) in fields.items()])
    return read


def _options_form() -> Callable[..., dict[str, Any]]:
    """A dependency of POST /v1/segment: one form field per :data:`REQUEST_OPTIONS` entry, typed as the
    SegmentOptions field and bounded as declared there; -> the fields given."""
    kinds = typing.get_type_hints(SegmentOptions)
    fields = {name: (kinds[name], Form(ge=spec.get("min"), le=spec.get("max"), description=spec["description"]))
              for name, spec in REQUEST_OPTIONS.items()}
    return _form_fields(lambda **given: {name: value for name, value in given.items() if value is not None}, fields)


def _tiling_form(server: TileOptions) -> Callable[..., TileOptions]:
    """A dependency of POST /v1/segment: the request's TileOptions from its form fields, one per field
    :func:`~grounded.serve.settings.request_tile_fields` lists, over ``server``'s."""
    fields = {name: (kind, Form(description=text)) for name, (kind, text) in request_tile_fields(server).items()}
    return _form_fields(lambda **given: request_tiling(server, given), fields)


def _honoured(refused: dict[str, str] | None) -> list[str]:
    """The request options the models honour (all of them while that is unknown)."""
    return [name for name in REQUEST_OPTIONS if name not in (refused or {})]


def _applied(defaults: SegmentOptions, options: dict[str, Any], refused: dict[str, str] | None) -> dict[str, Any]:
    """The honoured options a segment request ran with (defaults + the request's), for the page's filter."""
    merged = defaults.updated(**options)
    return {name: getattr(merged, name) for name in _honoured(refused)}
