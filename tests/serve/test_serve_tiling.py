"""Tiled inference through ``grounded serve``: the server's default (``--tile``) and a request's form fields
``tile``, ``tile_overlap``, ``tile_whole`` (from TileOptions), masks at the image's full size, refusals that name
the field, the OpenAPI schema, and the admission bound a tiled request goes through like any other.

The models are the exact fakes of tests/pipeline/tiling_fakes.py (objects drawn into the pixels; the detector
records every view it is shown and says Grounding DINO's input size, 800 / 1333), and once the tiny real models.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image
from pipeline.tiling_fakes import FakeDetector, FakeSegmenter, draw

from grounded.config import TileOptions
from grounded.utils.masks import rle_to_mask

HW = (1500, 2000)  # (H, W): larger than the fake detector's 800 x 1067 view of it, so tile=auto slices it
OBJECTS = {  # id -> XYXY; 800 px slices, 160 px overlap: x edges 640, 800, 1200, 1440; y 640, 700, 800
    1: (700, 100, 1300, 300),  # cut by slice edges
    2: (1900, 1400, 1930, 1440),  # small, in the bottom-right corner
    3: (100, 700, 900, 1200),  # cut by slice edges both ways
}
SLICES = 9  # slice_boxes((1500, 2000), (800, 800), 0.2): 3 rows x 3 columns


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scene_png() -> bytes:
    return _png(draw(HW, OBJECTS))


def _post(client, data: bytes, **form):
    return client.post("/v1/segment", files={"image": ("scene.png", data, "image/png")},
                       data={"prompt": "car . wheel", **form})


class _Models:
    """An engine over the fakes, and the detector to read what it was shown."""

    def __init__(self, make_client, detector: FakeDetector | None = None, **app_kwargs) -> None:
        from grounded import Predictor
        from grounded.serve.engine import Engine

        self.detector = detector or FakeDetector()
        self.engine = Engine(lambda: Predictor(detector=self.detector, segmenter=FakeSegmenter()))
        self.client = make_client(engine=self.engine, **app_kwargs)


def _assert_full_size_objects(body: dict) -> None:
    assert (body["height"], body["width"]) == HW
    boxes = {tuple(round(v) for v in d["bbox_xyxy"]): d for d in body["detections"]}
    assert set(boxes) == set(OBJECTS.values()), sorted(boxes)
    for x0, y0, x1, y1 in OBJECTS.values():
        mask = rle_to_mask(boxes[(x0, y0, x1, y1)]["mask"])
        assert mask.shape == HW and mask.sum() == (x1 - x0) * (y1 - y0) and mask[y0:y1, x0:x1].all()


def test_server_default_auto_tiles_and_a_request_turns_it_off(make_client, scene_png):
    models = _Models(make_client, tiling=TileOptions(tile="auto"))
    tiled = _post(models.client, scene_png)
    assert tiled.status_code == 200, tiled.text
    body = tiled.json()
    _assert_full_size_objects(body)
    assert body["tiling"] == {"tile": "auto", "tile_overlap": 0.2, "tile_whole": True, "slices": SLICES}
    assert body["reused_image_encoding"] is False
    # the detector saw the whole image reduced to its input, then nine 800 x 800 slices at full resolution
    assert models.detector.views == [(800, 1067)] + [(800, 800)] * SLICES

    models.detector.views.clear()
    plain = _post(models.client, scene_png, tile="off").json()
    assert models.detector.views == [HW]  # untiled: the whole image once (the detector reduces it itself)
    assert plain["tiling"] == {"tile": None, "tile_overlap": 0.2, "tile_whole": True, "slices": 0}
    _assert_full_size_objects(plain)  # the fakes are exact: both ways find every object whole

    models.detector.views.clear()
    assert _post(models.client, scene_png, tile="off").json()["reused_image_encoding"] is True  # cache as before
    assert models.detector.views == []
    health = models.client.get("/v1/health").json()
    assert health["in_flight"] == 0 and health["encoding_cache"]["images"] == 1  # tiled requests keep nothing


@pytest.mark.parametrize("form, views, exact", [
    ({"tile": "auto"}, [(800, 1067)] + [(800, 800)] * SLICES, True),
    # slices only: object 3 is as wide as a slice, so no slice holds it whole (SAHI's GREEDYNMM leaves a piece)
    ({"tile": "auto", "tile_whole": "false"}, [(800, 800)] * SLICES, False),
    ({"tile": "1000", "tile_overlap": "0", "tile_whole": "false"}, [(1000, 1000)] * 4, False),
    ({"tile": "2000"}, [HW], True),  # one slice covers the image: untiled, exactly the Predictor's result
    ({}, [HW], True),  # the server's default: off
])
def test_request_fields_decide_what_the_detector_is_shown(make_client, scene_png, form, views, exact):
    models = _Models(make_client)
    answer = _post(models.client, scene_png, **form)
    assert answer.status_code == 200, answer.text
    assert models.detector.views == views
    body = answer.json()
    assert all(rle_to_mask(d["mask"]).shape == HW for d in body["detections"]) and len(body["detections"]) >= 3
    if exact:
        _assert_full_size_objects(body)


@pytest.mark.parametrize("form, status, message", [
    ({"tile": "huge"}, 400, "tile must be 'auto', a slice side of at least 32 pixels"),
    ({"tile": "8"}, 400, "tile must be 'auto', a slice side of at least 32 pixels, or None (off), got 8"),
    ({"tile": "auto", "tile_overlap": "1.5"}, 400, "tile_overlap must be a fraction in [0, 1), e.g. 0.2, got 1.5"),
    ({"tile_overlap": "abc"}, 422, "tile_overlap: Input should be a valid number"),
    ({"tile_whole": "maybe"}, 422, "tile_whole: Input should be a valid boolean"),
])
def test_a_bad_tiling_field_is_refused_before_any_model_loads(make_client, scene_png, form, status, message):
    models = _Models(make_client)
    answer = _post(models.client, scene_png, **form)
    assert answer.status_code == status and message in answer.json()["detail"], answer.text
    assert not models.engine.loaded


def test_openapi_and_models_list_the_tiling_fields(make_client):
    client = make_client(tiling=TileOptions(tile=640, tile_overlap=0.25))
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Body_segment_v1_segment_post"]
    fields = schema["properties"]
    assert {"tile", "tile_overlap", "tile_whole"} <= set(fields) and "tile_batch" not in fields  # the server's
    assert "off: not tiled" in fields["tile"]["description"] and "default: 640" in fields["tile"]["description"]
    assert {"number"} == {t.get("type") for t in fields["tile_overlap"]["anyOf"]} - {"null"}
    tiling = client.get("/v1/models").json()["tiling"]
    assert {name: spec["default"] for name, spec in tiling.items()} == {"tile": 640, "tile_overlap": 0.25,
                                                                        "tile_whole": True}


class _BlockingDetector(FakeDetector):
    """Holds its first view until released: a tiled request stays in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def encode(self, images):
        self.entered.set()
        assert self.release.wait(timeout=60)
        return super().encode(images)


def test_a_tiled_request_goes_through_the_same_admission_bound(make_client, scene_png):
    from grounded.serve.settings import Limits

    models = _Models(make_client, detector=_BlockingDetector(), limits=Limits(max_queue=1))
    answers: list = []
    running = threading.Thread(target=lambda: answers.append(_post(models.client, scene_png, tile="auto")),
                               daemon=True)
    running.start()
    try:
        assert models.detector.entered.wait(timeout=60)
        busy = _post(models.client, scene_png, tile="off")
        assert busy.status_code == 503 and "--max-queue" in busy.json()["detail"]
        assert models.client.get("/v1/health").json()["in_flight"] == 1
    finally:
        models.detector.release.set()
        running.join(timeout=60)
    assert answers and answers[0].status_code == 200 and answers[0].json()["tiling"]["slices"] == SLICES


def test_serve_tile_flags_set_the_default(monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    from grounded.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.setdefault("app", app))
    assert main(["serve", "--tile", "auto", "--tile-overlap", "0.3", "--no-tile-whole"]) == 0
    tiling = TestClient(seen["app"], base_url="http://127.0.0.1").get("/v1/models").json()["tiling"]
    assert {k: v["default"] for k, v in tiling.items()} == {"tile": "auto", "tile_overlap": 0.3, "tile_whole": False}
    assert main(["serve", "--tile", "8"]) == 2  # refused before the server starts


def test_tiny_real_models_answer_full_size_masks(make_client):
    """Grounding DINO + SAM (tiny, random): a 300 x 420 image is larger than the tiny detector's input."""
    rng = np.random.default_rng(2)
    image = np.kron(rng.integers(0, 256, (30, 42, 3), dtype=np.uint8), np.ones((10, 10, 1), dtype=np.uint8))
    answer = _post(make_client(), _png(image), tile="auto", box_threshold="0.2", text_threshold="0",
                   max_detections="3")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["tiling"]["slices"] > 1 and (body["height"], body["width"]) == (300, 420)
    assert 0 < len(body["detections"]) <= 3
    assert all(rle_to_mask(d["mask"]).shape == (300, 420) for d in body["detections"])
