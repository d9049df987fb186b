"""POST /v1/segment/points (clicks) and the image encoding cache it shares with /v1/segment (tiny models)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from grounded.serve.cache import CachedImage, EncodingCache, nbytes


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (72, 96, 3), dtype=np.uint8)


def _click(client, image_bytes: bytes | None = None, **form):
    files = {"image": ("photo.png", image_bytes, "image/png")} if image_bytes is not None else None
    data = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in form.items()}
    return client.post("/v1/segment/points", files=files, data=data)


def test_clicks_answer_the_segmenters_own_masks_and_reuse_the_encoding(make_client, tiny_predictor, image):
    """Each answer equals decode_points on the predictor's own encoding (the prior: the previous answer's
    logits); the image is encoded once, then only the prompt encoder and mask decoder run."""
    from grounded.models.interfaces import PointPrompt
    from grounded.serve.clicks import decode_click

    client = make_client()
    data = _png(image)
    first = _click(client, data, points=[[40, 30]], labels=[1])
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["image_id"] == hashlib.sha256(data).hexdigest() and body["reused_image_encoding"] is False
    (found,) = body["detections"]
    assert found["mask"]["size"] == [72, 96] and found["class_id"] is None and 0 <= found["mask_score"]

    encoded = tiny_predictor.timer.seconds["sam.image_encoder"]
    second = _click(client, image_id=body["image_id"], points=[[40, 30], [80, 60]], labels=[1, 0],
                    mask_id=body["mask_id"])
    assert second.status_code == 200, second.text
    assert second.json()["reused_image_encoding"] is True and second.json()["mask_id"] != body["mask_id"]
    assert tiny_predictor.timer.seconds["sam.image_encoder"] == encoded  # no image encoder ran for the click

    from grounded.serve.clicks import click_segmenter

    features = tiny_predictor.encode([image]).segmenter
    segmenter = tiny_predictor.segmenter
    clicker, separate = click_segmenter(tiny_predictor)
    assert clicker is segmenter and not separate  # the predictor's one SAM answers clicks too
    one = decode_click(segmenter, features, PointPrompt.of([[40, 30]], [1]))
    two = decode_click(segmenter, features, PointPrompt.of([[40, 30], [80, 60]], [1, 0], mask_logits=one.logits))
    from grounded.utils.masks import rle_to_mask

    for answer, expected in ((body, one), (second.json(), two)):
        assert np.array_equal(rle_to_mask(answer["detections"][0]["mask"]), expected.mask)
        assert answer["detections"][0]["mask_score"] == pytest.approx(expected.score, abs=1e-5)

    # the cache is shared with /v1/segment: a text prompt on the clicked image runs no image encoder either
    text = client.post("/v1/segment", files={"image": ("photo.png", data, "image/png")},
                       data={"prompt": "car", "box_threshold": "0.2", "text_threshold": "0"}).json()
    assert text["reused_image_encoding"] is True and text["image_id"] == body["image_id"]
    cache = client.get("/v1/health").json()["encoding_cache"]
    assert cache["images"] == 1 and cache["hits"] >= 2 and cache["bytes"] > 0


def test_a_fix_starts_from_the_box_and_mask_of_a_detection(make_client, tiny_predictor, image):
    """A box and an existing mask (COCO RLE) as the prior: the answer is the segmenter's for exactly that prompt."""
    from grounded.models.interfaces import PointPrompt
    from grounded.serve.clicks import decode_click
    from grounded.utils.masks import mask_to_rle, rle_to_mask

    client = make_client()
    existing = np.zeros((72, 96), dtype=bool)
    existing[10:50, 20:70] = True
    rle = mask_to_rle(existing)
    response = _click(client, _png(image), points=[[30, 20]], labels=[0], box=[20, 10, 70, 50],
                      mask={"size": rle["size"], "counts": rle["counts"]})
    assert response.status_code == 200, response.text
    from grounded.serve.clicks import click_segmenter

    features = tiny_predictor.encode([image]).segmenter
    segmenter = tiny_predictor.segmenter
    clicker, separate = click_segmenter(tiny_predictor)
    assert clicker is segmenter and not separate  # the predictor's one SAM answers clicks too
    prior = segmenter.mask_prior(features, 0, existing)
    expected = decode_click(segmenter, features, PointPrompt.of([[30, 20]], [0], [20, 10, 70, 50], prior))
    assert np.array_equal(rle_to_mask(response.json()["detections"][0]["mask"]), expected.mask)


@pytest.mark.parametrize("form, status, message", [
    ({"points": [[1, 1]] * 65, "labels": [1] * 65}, 413, "at most 64"),
    ({"points": [[1, 1]], "labels": [1, 0]}, 400, "one label per point"),
    ({"points": [[500, 1]], "labels": [1]}, 400, "must lie on the 96x72 image"),
    ({"points": "[[1, 1]", "labels": [1]}, 400, "points is not valid JSON"),
    ({"points": [], "labels": []}, 400, "at least one point"),
    ({"points": [[1, 1]], "labels": [1], "mask_id": "nope"}, 404, "mask id 'nope' is not known"),
    ({"points": [[1, 1]], "labels": [1], "mask": {"size": [100000, 100000], "counts": "zz"}}, 400,
     "mask size [100000, 100000] is not the image's [72, 96]"),  # refused before anything is decoded
    ({"points": [[1, 1]], "labels": [1], "mask": {"size": [72, 96], "counts": 5}}, 400, "cannot be decoded"),
    ({"points": [[1, 1]], "labels": [1], "mask": [1, 2]}, 400, "mask must be a COCO RLE"),
])
def test_bad_clicks_are_refused_with_the_fix(make_client, image, form, status, message):
    response = _click(make_client(), _png(image), **form)
    assert response.status_code == status and message in response.json()["detail"], response.text


def test_image_ids_tokens_and_openapi(make_client, image):
    client = make_client()
    unknown = _click(client, image_id="0" * 64, points=[[1, 1]], labels=[1])
    assert unknown.status_code == 404 and "send the image itself again" in unknown.json()["detail"]
    assert _click(client, points=[[1, 1]], labels=[1]).status_code == 400  # neither image nor id
    locked = make_client(token="secret")
    assert _click(locked, _png(image), points=[[1, 1]], labels=[1]).status_code == 401
    schema = client.get("/openapi.json").json()["paths"]["/v1/segment/points"]["post"]
    example = schema["responses"]["200"]["content"]["application/json"]["example"]
    assert example["detections"][0]["mask"]["size"] and "mask_id" in example
    form = client.get("/openapi.json").json()["components"]["schemas"]
    fields = next(v for k, v in form.items() if "segment_points" in k)["properties"]
    assert fields["points"]["examples"] and fields["labels"]["examples"]


def test_models_say_whether_clicks_are_served(make_client, tiny_model_dirs):
    from functools import partial

    from grounded.serve.engine import Engine, probe_backends

    models = {"detector": str(tiny_model_dirs[0]), "segmenter": str(tiny_model_dirs[1])}
    engine = Engine(lambda: None, models, probe=partial(probe_backends, models, True))
    clicks = make_client(engine=engine).get("/v1/models").json()["clicks"]
    assert clicks == {"available": True, "segmenter": str(tiny_model_dirs[1]), "why": None}
    unknown = make_client(engine=Engine(lambda: None)).get("/v1/models").json()["clicks"]  # no probe, not loaded
    assert unknown["available"] is None
    from fastapi.testclient import TestClient

    from grounded.serve.app import create_app

    assert TestClient(create_app(None)).get("/v1/models").json()["clicks"]["available"] is False  # review only


def test_a_concept_segmenter_without_tracker_weights_says_clicks_need_a_segmenter(make_client, tmp_path, clip_vocab):
    pytest.importorskip("torchvision", reason="SAM 3's processor needs torchvision (the backends extra)")
    from grounded import Predictor
    from grounded.serve.engine import Engine
    from grounded.testing.tiny_segmenters import build_tiny_sam3

    folder = str(build_tiny_sam3(tmp_path / "sam3", clip_vocab))
    client = make_client(engine=Engine(lambda: Predictor(model=folder, local_files_only=True)))
    response = _click(client, _png(np.zeros((40, 50, 3), dtype=np.uint8)), points=[[5, 5]], labels=[1])
    assert response.status_code == 501 and "clicks need a segmenter" in response.json()["detail"]
    assert "holds no tracker weights" in response.json()["detail"]
    assert client.get("/v1/models").json()["clicks"]["available"] is False


def test_the_cache_is_bounded_by_bytes():
    mb = np.zeros(2**20, dtype=np.uint8)
    cache = EncodingCache(max_bytes=3 * 2**20)
    for key in "abc":
        assert cache.put(key, CachedImage(mb.copy()))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", CachedImage(mb.copy()))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache} and cache.evicted == 1
    assert not cache.put("huge", CachedImage(np.zeros(4 * 2**20, dtype=np.uint8)))  # larger than the bound
    assert "huge" not in cache and cache.bytes <= cache.max_bytes
    shared = torch.zeros(1000)
    assert nbytes(CachedImage(mb, encoding=[shared, shared], clicks={"x": shared})) == 2**20 + 4000  # each once
