"""The REST API through FastAPI's TestClient, with the tiny models: segment, bad inputs, paths, token."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from grounded.errors import ModelLoadError


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_bytes() -> bytes:
    return _png(np.random.default_rng(3).integers(0, 256, (72, 96, 3), dtype=np.uint8))


def _post(client, data: bytes, name: str = "photo.png", **form):
    return client.post("/v1/segment", files={"image": (name, data, "image/png")}, data=form)


def test_segment_returns_the_json_of_grounded_segment(make_client, tiny_predictor, image_bytes):
    from grounded.io.detections_json import detections_to_json
    from grounded.ontology import Ontology

    client = make_client()
    health = client.get("/v1/health").json()
    assert health.pop("encoding_cache") == {"images": 0, "bytes": 0, "max_bytes": 2**30, "hits": 0, "misses": 0,
                                            "evicted": 0}
    assert health == {"status": "ok", "models_loaded": False, "busy": False, "run": False,
                      "in_flight": 0, "queued": 0, "capacity": 4, "turned_away": 0}
    response = _post(client, image_bytes, prompt="car . wheel", box_threshold="0.2", text_threshold="0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classes"] == ["car", "wheel"] and body["reused_image_encoding"] is False
    assert body["options"]["box_threshold"] == 0.2 and body["options"]["text_threshold"] == 0.0
    assert client.get("/v1/health").json()["models_loaded"] is True

    # what `grounded segment` writes for the same image, prompt and thresholds (stateless predictor call)
    image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    ontology = Ontology.from_prompt("car . wheel")
    expected = tiny_predictor.segment_encoded(
        tiny_predictor.encode([image]), ontology, box_threshold=0.2, text_threshold=0.0,
        class_box_thresholds={"car": 0.2, "wheel": 0.2}, class_text_thresholds={"car": 0.0, "wheel": 0.0})[0]
    assert len(expected) > 0, "the tiny models should find something at threshold 0.2"
    assert body["detections"] == detections_to_json(expected, image.shape[:2], "photo.png")["detections"]
    assert {"bbox_xyxy", "class_id", "class_name", "confidence", "mask"} <= set(body["detections"][0])

    # same image, looser threshold: the image encoders are not run again, and the stricter result is a prefix
    again = _post(client, image_bytes, prompt="car . wheel", box_threshold="0.1", text_threshold="0").json()
    assert again["reused_image_encoding"] is True
    strict = [d for d in again["detections"] if d["confidence"] > 0.2]
    assert strict == body["detections"]  # the page's client-side filter gives the server's answer


def test_segment_png_and_ontology(make_client, image_bytes, bert_vocab_file):
    client = make_client()
    models = client.get("/v1/models").json()
    assert "car_parts" in models["ontologies"] and models["loaded"] is False
    response = _post(client, image_bytes, ontology="car_parts", box_threshold="0.2", text_threshold="0", output="png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (96, 72)
    # a threshold given applies over the ontology's own (car_parts sets box 0.30 for every class)
    loose = _post(client, image_bytes, ontology="car_parts", box_threshold="0.2", text_threshold="0").json()
    strict = _post(client, image_bytes, ontology="car_parts", box_threshold="0.9", text_threshold="0").json()
    assert all(d["confidence"] > 0.9 for d in strict["detections"])  # not the ontology's 0.30
    assert all(d["confidence"] > 0.2 for d in loose["detections"])
    if bert_vocab_file is None:  # the filler vocabulary reads the parts' names as unknown tokens
        pytest.skip("what the tiny models find for car_parts needs BERT's real vocabulary (../shared/data)")
    assert any(0.3 < d["confidence"] <= 0.9 for d in loose["detections"]), "the tiny models should find some"


def test_segment_form_fields_are_request_options(make_client):
    """POST /v1/segment's option fields, typed and bounded in OpenAPI, are REQUEST_OPTIONS (one declaration for
    the form, its 422s and GET /v1/models' list the page builds its controls from)."""
    from grounded.serve.app import REQUEST_OPTIONS

    schema = make_client().get("/openapi.json").json()
    form = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = schema["components"]["schemas"][form["$ref"].split("/")[-1]]["properties"]
    kinds = {"box_threshold": "number", "text_threshold": "number", "nms": "string", "nms_iou": "number",
             "max_detections": "integer"}
    for name, spec in REQUEST_OPTIONS.items():
        branch = next(b for b in fields[name]["anyOf"] if b["type"] != "null")
        assert branch["type"] == kinds[name], name
        assert {k: branch[k] for k in ("minimum", "maximum") if k in branch} == \
            {k: spec[s] for s, k in (("min", "minimum"), ("max", "maximum")) if s in spec}, name
        assert fields[name]["description"] == spec["description"]


def test_models_lists_the_options_the_backends_honour(make_client, tiny_model_dirs, tiny_owlv2_dir, image_bytes):
    """OWLv2 has no text threshold: /v1/models says so before the models load, and a request without one
    (as the page sends it) works; no per-class text threshold is made up from a default value."""
    from functools import partial

    from grounded import Predictor
    from grounded.serve.engine import Engine, probe_backends

    models = {"detector": str(tiny_owlv2_dir), "segmenter": str(tiny_model_dirs[1])}
    engine = Engine(lambda: Predictor(**models, local_files_only=True, box_threshold=0.0), models,
                    probe=partial(probe_backends, models, True))
    client = make_client(engine=engine)
    before = client.get("/v1/models").json()
    assert before["loaded"] is False and "Owlv2Detector" in before["refused"]["text_threshold"]
    assert set(before["options"]) == {"box_threshold", "nms", "nms_iou", "max_detections"}
    assert before["options"]["box_threshold"] == {"default": 0.35, "min": 0.0, "max": 1.0,
                                                  "description": "for every class"}
    assert before["options"]["nms"]["choices"] == ["class", "agnostic", "none"]

    response = _post(client, image_bytes, prompt="car . wheel", box_threshold="0", nms="class")
    assert response.status_code == 200, response.text
    assert response.json()["detections"] and "text_threshold" not in response.json()["options"]
    assert client.get("/v1/models").json()["refused"] == before["refused"]  # loaded: the same answer
    assert _post(client, image_bytes, prompt="car", text_threshold="0.25").status_code == 200  # the default
    refused = _post(client, image_bytes, prompt="car", text_threshold="0.3")
    assert refused.status_code == 400 and "not supported by the detector" in refused.json()["detail"]


BOMB = Image.new("1", (12000, 12000))  # 144 Mpixels, a few kB as PNG


@pytest.mark.parametrize(
    "data, form, status, message",
    [
        (b"garbage", {"prompt": "car"}, 400, "not an image file"),
        (b"", {"prompt": "car"}, 400, "empty"),
        (None, {"prompt": "   "}, 400, "empty prompt"),
        (None, {}, 400, "empty prompt"),
        (None, {"prompt": "car", "ontology": "car_parts"}, 400, "not both"),
        (None, {"ontology": "../../etc/passwd"}, 404, "unknown ontology"),
        (None, {"prompt": "car", "box_threshold": "1.5"}, 422, "box_threshold"),
        (None, {"prompt": "car", "box_threshold": "high"}, 422, "box_threshold"),
        (None, {"prompt": "car", "nms": "sometimes"}, 400, "nms must be one of"),
        (None, {"prompt": "car", "output": "gif"}, 400, "output must be"),
        ("bomb", {"prompt": "car"}, 413, "Mpixels"),
        ("truncated", {"prompt": "car"}, 400, "cannot be decoded"),
    ],
)
def test_bad_segment_requests_get_one_clear_message(make_client, image_bytes, data, form, status, message):
    client = make_client()
    if data is None:
        data = image_bytes
    elif data == "bomb":
        buffer = io.BytesIO()
        BOMB.save(buffer, format="PNG")
        data = buffer.getvalue()
        assert len(data) < 100_000
    elif data == "truncated":
        data = image_bytes[: len(image_bytes) // 2]
    response = _post(client, data, **form)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and message in detail and "Traceback" not in response.text


def test_missing_image_and_too_large_upload(make_client, image_bytes):
    from grounded.serve.app import Limits

    client = make_client()
    response = client.post("/v1/segment", data={"prompt": "car"})
    assert response.status_code == 422 and response.json()["detail"].startswith("image:")
    small = make_client(limits=Limits(max_upload_bytes=1000))
    response = _post(small, image_bytes, prompt="car")
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_model_load_error_is_the_clear_error_of_grounded_segment(make_client, image_bytes, tmp_path):
    from grounded.cli import build_parser
    from grounded.cli.common import predictor_from_args
    from grounded.serve.engine import Engine

    args = build_parser().parse_args(["serve", "--detector", str(tmp_path / "no_such_model"), "--offline"])
    with pytest.raises(ModelLoadError) as direct:
        predictor_from_args(args)
    client = make_client(engine=Engine(lambda: predictor_from_args(args)))
    response = _post(client, image_bytes, prompt="car")
    assert response.status_code == 503 and response.json()["detail"] == str(direct.value)


class _Recorder:
    """A predictor double that records how many calls overlap."""

    def __init__(self) -> None:
        from grounded.testing.fake import FakePredictor

        self.fake, self.active, self.most, self.encoded = FakePredictor(), 0, 0, 0

    def _enter(self) -> None:
        self.active += 1
        self.most = max(self.most, self.active)
        time.sleep(0.05)
        self.active -= 1

    def encode(self, images):
        self._enter()
        self.encoded += 1
        return self.fake.encode(images)

    def segment_encoded(self, encoding, prompt, **options):
        self._enter()
        return self.fake.segment_encoded(encoding, prompt)


def test_requests_that_use_the_models_run_one_at_a_time(make_client, image_bytes):
    from grounded.serve.app import Limits
    from grounded.serve.engine import Engine

    recorder = _Recorder()
    client = make_client(engine=Engine(lambda: recorder), limits=Limits(max_queue=6))  # all six admitted
    other = _png(np.zeros((30, 40, 3), dtype=np.uint8))
    statuses = []
    threads = [threading.Thread(target=lambda d=d: statuses.append(_post(client, d, prompt="car").status_code))
               for d in (image_bytes, other) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6 and recorder.most == 1


@pytest.mark.parametrize(
    "path, status",
    [
        ("../run/run.json", 403),
        ("sub/../../run/run.json", 403),
        ("/etc/passwd", 403),
        ("..\\run\\run.json", 403),
        ("C:/Windows/win.ini", 403),
        ("outside.png", 403),  # a symbolic link in the images root to a file outside it
        ("notes.txt", 404),  # inside the root, not an image of the run
        ("nope.png", 404),
    ],
)
def test_path_traversal_is_refused(make_client, run_dir, path, status):
    root = run_dir.parent / "images"
    secret = run_dir.parent / "secret.png"
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(secret)
    os.symlink(secret, root / "outside.png")
    (root / "notes.txt").write_text("not an image")
    client = make_client(run=run_dir)
    for endpoint in ("/v1/run/image", "/v1/run/record"):
        response = client.get(endpoint, params={"file": path})
        assert response.status_code == status, (endpoint, response.text)
    response = client.put("/v1/run/review", params={"file": path}, json={"reviewed": True})
    assert response.status_code == status
    assert client.get("/v1/run/image", params={"file": "sub/grey.png"}).status_code == 200
    assert client.get("/static/../../../../etc/passwd").status_code == 404


def test_token_is_checked_on_every_request(make_client, image_bytes):
    client = make_client(token="s3cret")
    for method, path in (("get", "/"), ("get", "/v1/health"), ("get", "/docs"), ("get", "/openapi.json"),
                         ("get", "/static/app.js"), ("get", "/v1/run/images")):
        assert getattr(client, method)(path).status_code == 401, path
    assert _post(client, image_bytes, prompt="car").status_code == 401
    assert client.get("/v1/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = client.get("/?token=s3cret")  # the page's first load sets the cookie its later requests carry
    assert page.status_code == 200 and "grounded_token" in page.headers["set-cookie"]
    assert "httponly" in page.headers["set-cookie"].lower()
    assert client.get("/openapi.json").status_code == 200  # now with the cookie


def test_loopback_server_refuses_other_host_names(make_client):
    client = make_client(allowed_hosts=["127.0.0.1", "localhost", "::1"])
    assert client.get("/v1/health", headers={"host": "evil.example:8000"}).status_code == 400
    assert client.get("/v1/health", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_cli_refuses_a_public_address_without_token_and_names_the_extra(monkeypatch, capsys):
    import importlib.util

    from grounded.cli import main

    monkeypatch.delenv("GROUNDED_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
    assert main(["serve", "--max-queue", "0"]) == 2
    assert "--max-queue" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert main(["serve"]) == 2
    assert 'pip install "grounded[serve]"' in capsys.readouterr().err


def test_page_is_served_and_needs_nothing_from_the_network(make_client):
    from grounded.serve.app import STATIC

    client = make_client()
    html = client.get("/").text
    scripts = [line.split('"')[1] for line in html.splitlines() if "<script src=" in line]
    assert scripts and all(client.get(src).status_code == 200 for src in scripts)
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
