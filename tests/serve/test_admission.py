"""A bounded number of segment requests in flight: the rest get 503 + Retry-After at once, never a hang.

The models are a slowed FakePredictor (no weights), so requests pile up behind the one running. Through the
test client, and through a real uvicorn server on 127.0.0.1 with uploads larger than the socket buffers
(a turned-away request's body is never read by the app: the server must still answer it).
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from .conftest import free_port


def _png(height: int, width: int, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _slow_engine(delay: float):
    from grounded.serve.engine import Engine
    from grounded.testing.fake import FakePredictor

    return Engine(lambda: FakePredictor(delay=delay))


def _concurrently(count: int, send) -> list:
    """``send(i)`` from ``count`` threads at once; every answer (a hang fails the join)."""
    answers: list = [None] * count
    start = threading.Barrier(count)

    def one(i: int) -> None:
        start.wait()
        answers[i] = send(i)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a request hung"
    return answers


def _check(answers: list, capacity: int) -> tuple[int, int]:
    """Every answer is 200, or 503 with a whole-seconds Retry-After and one message: (ok, busy)."""
    ok = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 503]
    assert len(ok) + len(busy) == len(answers), [a.status_code for a in answers]
    for answer in busy:
        assert int(answer.headers["retry-after"]) >= 1
        assert "--max-queue" in answer.json()["detail"]
    assert len(ok) >= capacity and busy, (len(ok), len(busy))
    return len(ok), len(busy)


def test_admission_counts_and_estimates():
    from grounded.errors import InputError
    from grounded.serve.admission import Admission

    admission = Admission(2)
    assert admission.enter() and admission.enter() and not admission.enter()
    assert admission.report(running=True) == {"in_flight": 2, "queued": 1, "capacity": 2, "turned_away": 1}
    assert admission.retry_after(None) == 2 and admission.retry_after(4.2) == 9  # 2 requests ahead
    admission.leave()
    assert admission.enter()
    with pytest.raises(InputError, match="max_queue"):
        Admission(0)


def test_over_the_limit_uploads_are_answered_503_before_they_are_decoded(make_client, monkeypatch):
    import grounded.serve.app as app_module
    from grounded.serve.app import Limits

    decoded = []
    real = app_module.decode_upload
    monkeypatch.setattr(app_module, "decode_upload", lambda *a: decoded.append(a[1]) or real(*a))
    client = make_client(engine=_slow_engine(0.3), limits=Limits(max_queue=2))
    image = _png(60, 80)
    seen = []

    def send(i: int):
        response = client.post("/v1/segment", files={"image": (f"{i}.png", image, "image/png")}, data={"prompt": "car"})
        seen.append(client.get("/v1/health").json())
        return response

    ok, busy = _check(_concurrently(10, send), capacity=2)
    assert len(decoded) == ok  # the turned-away uploads were never decoded
    assert all(h["in_flight"] <= h["capacity"] == 2 for h in seen)
    health = client.get("/v1/health").json()
    assert (health["in_flight"], health["queued"], health["turned_away"]) == (0, 0, busy)
    # the review and health endpoints are never turned away
    assert client.get("/v1/models").status_code == 200


def test_a_real_server_answers_every_upload_over_the_limit():
    """uvicorn on 127.0.0.1, 12 uploads of ~3 MB at once, 2 admitted: all answered, none hangs."""
    import httpx
    import uvicorn

    from grounded.serve.app import Limits, create_app

    app = create_app(_slow_engine(0.2), limits=Limits(max_queue=2))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url + "/v1/health", timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
        image = _png(1000, 1000)
        assert len(image) > 2_000_000

        def send(i: int):
            return httpx.post(url + "/v1/segment", files={"image": (f"{i}.png", image, "image/png")},
                              data={"prompt": "car"}, timeout=60)

        ok, busy = _check(_concurrently(12, send), capacity=2)
        health = httpx.get(url + "/v1/health", timeout=5).json()
        assert health["capacity"] == 2 and health["in_flight"] == 0 and health["turned_away"] == busy
    finally:
        server.should_exit = True
        thread.join(timeout=10)
