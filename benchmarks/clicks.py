"""Clicks: milliseconds per click on the server and in the browser, and NoC@85 / NoC@90 where weights exist.

    python benchmarks/clicks.py server                     # SAM ViT-B and SAM 2.1 hiera-tiny, 20 clicks each
    python benchmarks/clicks.py server --rows sam-vit-b --clicks 40
    python benchmarks/clicks.py server --compile           # each row eager and with --compile, side by side
    python benchmarks/clicks.py browser                    # tiny models, headless Chromium, 20 clicks
    python benchmarks/clicks.py noc                        # the NoC protocol with the oracle segmenter (offline)
    python benchmarks/clicks.py noc --segmenter facebook/sam-vit-base --images 50   # with real weights

**server**: full-size random-weight segmenters (benchmarks/segmenters.py's rows; random weights cost what real
ones cost) in a ``Predictor`` with the tiny detector, as ``grounded serve`` builds it (CPU defaults applied),
behind the real app (``create_app`` + ``Engine`` through FastAPI's TestClient, no network): one
``POST /v1/segment/points`` with the photo (the image encoder runs: its seconds are reported), then ``--clicks``
more with its ``image_id`` and the previous answer's ``mask_id``, each adding a click (alternately foreground and
background, fixed places). Per click: the server's own ``seconds`` (prompt encoder + mask decoder, mask upsampling,
RLE; the encoding comes from the cache) and the request's wall time through the app.

**browser**: ``grounded serve``'s app on 127.0.0.1 with the tiny models of grounded/testing/, a run of one photo;
headless Chromium (selenium) clicks on the Review canvas ``--clicks`` times; per click the page's own measure
(``data-click-ms``: from sending the click to the mask drawn on the canvas).

**noc**: the NoC protocol of grounded/testing/oracle.py on Car Parts objects (../shared/data/car_parts) of at least
1000 pixels, up to 20 clicks each, the previous answer's logits as the prior: mean NoC@85 and NoC@90 (lower is
better; 20 = never). ``--segmenter oracle`` (the default) checks the harness offline; a SAM-family checkpoint
(a local folder or a cached Hugging Face name) gives the real figures. Random weights give meaningless ones.

Figures are medians; the machine's load average is printed with them (these CPUs are shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402

CAR_PARTS = C.SHARED / "car_parts" / "train" / "annotations.json"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def click_places(h: int, w: int, n: int) -> list[tuple[list[float], int]]:
    """``n`` clicks ([x, y], label) at fixed pseudo-random places, foreground first, then alternating."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0.2, 0.8, (n, 2)) * [w, h]
    return [([float(x), float(y)], 1 if i % 2 == 0 else 0) for i, (x, y) in enumerate(xy)]


def server_row(folder: Path, detector: Path, photo: np.ndarray, clicks: int, compile: bool = False) -> dict:
    """Encoder seconds and per-click times of one segmenter checkpoint behind the real app, in a Predictor as
    `grounded serve` builds it (CPU defaults applied) with the tiny detector (its encoder costs ~nothing).
    With ``compile`` (``--compile``: the mask decoder through torch.compile) one untimed object of 3 clicks first
    compiles both of the decoder's graphs (3 masks for a first click, 1 after), as a server's warm-up would."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from grounded import Predictor
    from grounded.serve.app import Limits, create_app
    from grounded.serve.engine import Engine

    predictor = Predictor(str(detector), str(folder), local_files_only=True, compile=compile or None)
    client = TestClient(create_app(Engine(lambda: predictor), limits=Limits(max_points=clicks + 1)))
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    h, w = photo.shape[:2]
    places = click_places(h, w, clicks + 1)

    def one_object(places: list, image_id: str | None) -> tuple[str, list[tuple[float, float, float]]]:
        """Click one object (each request adds a click, with the previous answer's mask_id) -> (image_id,
        [(server seconds, request seconds, decoder seconds)] per click)."""
        points, labels, mask_id, times = [], [], None, []
        for xy, label in places:
            points.append(xy)
            labels.append(label)
            form = {"points": json.dumps(points), "labels": json.dumps(labels)}
            if mask_id:
                form["mask_id"] = mask_id
            files = None
            if image_id:
                form["image_id"] = image_id
            else:
                files = {"image": ("photo.jpg", buffer.getvalue(), "image/jpeg")}
            decoder = predictor.timer.seconds["sam.prompt_mask_decoder"]
            tick = time.perf_counter()
            response = client.post("/v1/segment/points", data=form, files=files)
            took = time.perf_counter() - tick
            decoder = predictor.timer.seconds["sam.prompt_mask_decoder"] - decoder
            body = response.json()
            if response.status_code != 200:
                raise SystemExit(f"{folder.name}: {response.status_code} {body}")
            image_id, mask_id = body["image_id"], body["mask_id"]
            times.append((body["seconds"], took, decoder))
        return image_id, times

    image_id, warm = one_object(places[:3] if compile else places[:1], None)  # the image encoder runs here
    first = warm[0][0]
    _, times = one_object(places, image_id)
    later = times[1:]  # the first click of an object asks for 3 masks; the refining clicks for 1
    server, wall, decoders = ([1000 * t[k] for t in later] for k in range(3))
    return {"encoder_s": first, "click_ms": statistics.median(server), "click_ms_p90": float(np.percentile(server, 90)),
            "decoder_ms": statistics.median(decoders), "wall_ms": statistics.median(wall), "clicks": len(server),
            "photo": f"{w}x{h}"}


def run_server(args: argparse.Namespace) -> None:
    import segmenters as S

    from grounded.testing.tiny import build_tiny_models

    photo = C.photos(1)[0]
    detector, _ = build_tiny_models(args.cache_dir / "tiny", vocab_file=C.BERT_VOCAB if C.BERT_VOCAB.exists() else None)
    print(f"load average before: {load_average()} ({os.cpu_count()} CPUs)")
    print("| segmenter (random weights) | photo | encoders s (first request) | median ms per click (server) | p90 ms "
          "| of which prompt encoder + mask decoder | median ms per request (through the app) |")
    print("|---|---|---|---|---|---|---|")
    for name, compile in [(n, c) for n in args.rows for c in ([False, True] if args.compile else [False])]:
        row = server_row(S.checkpoint(name, args.cache_dir), detector, photo, args.clicks, compile)
        label = f"{name} ({S.SEGMENTERS[name][0]}){', --compile' if compile else ''}"
        print(f"| {label} | {row['photo']} | {row['encoder_s']:.2f} | {row['click_ms']:.0f} "
              f"| {row['click_ms_p90']:.0f} | {row['decoder_ms']:.0f} | {row['wall_ms']:.0f} |", flush=True)
    print(f"load average after: {load_average()}")


def run_browser(args: argparse.Namespace) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from grounded import Predictor
    from grounded.label import label
    from grounded.serve.app import create_app
    from grounded.serve.engine import Engine
    from grounded.serve.runs import RunView
    from grounded.testing.browser import chromium, click_image, serve_in_thread
    from grounded.testing.fake import FakePredictor
    from grounded.testing.tiny import build_tiny_models

    work = Path(tempfile.mkdtemp(prefix="clicks-browser-"))
    images = work / "images"
    images.mkdir()
    photo = C.photos(1)[0]
    from PIL import Image

    Image.fromarray(photo).save(images / "photo.jpg", quality=92)
    label(images, ["car", "wheel"], work / "run", predictor=FakePredictor(), formats=["coco"], preview=0, progress=False)
    detector, segmenter = build_tiny_models(work / "tiny", vocab_file=C.BERT_VOCAB if C.BERT_VOCAB.exists() else None)
    engine = Engine(lambda: Predictor(str(detector), str(segmenter), local_files_only=True))
    url, server = serve_in_thread(create_app(engine, RunView(work / "run")))
    driver = chromium()
    times = []
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 60, poll_frequency=0.01)
        wait.until(lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
        wait.until(lambda d: int(d.find_element("id", "rv-canvas").get_attribute("data-drawn") or 0) >= 0
                   and d.execute_script("return Boolean(rv.image);"))
        driver.find_element("tag name", "body").send_keys("c")
        canvas = driver.find_element("id", "rv-canvas")
        h, w = photo.shape[:2]
        for n, (xy, label_) in enumerate(click_places(h, w, args.clicks + 1)):
            click_image(driver, *xy, background=label_ == 0)
            wait.until(lambda d, n=n: int(d.find_element("id", "rv-canvas").get_attribute("data-answers") or 0) > n)
            if n > 0:  # the first click also sends the image and runs the encoders
                times.append(float(canvas.get_attribute("data-click-ms")))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"browser (headless Chromium), tiny Grounding DINO + SAM, photo {photo.shape[1]}x{photo.shape[0]}: "
          f"click -> mask on screen, median {statistics.median(times):.0f} ms, p90 {np.percentile(times, 90):.0f} ms "
          f"over {len(times)} clicks (load average {load_average()})")


def run_noc(args: argparse.Namespace) -> None:
    import torch

    from grounded.formats.coco import CocoDataset
    from grounded.models.interfaces import PointPrompt
    from grounded.serve.clicks import decode_click
    from grounded.testing.oracle import OracleSegmenter, click_curve, noc, pixel_key
    from grounded.utils.images import load_image

    if not CAR_PARTS.is_file():
        raise SystemExit(f"{CAR_PARTS} not found: the NoC run needs the Car Parts ground truth")
    dataset = CocoDataset(str(CAR_PARTS))
    items = [dataset[i] for i in range(min(args.images, len(dataset)))]
    if args.segmenter == "oracle":
        truth = {pixel_key(load_image(path)): list(d.mask) for path, d in items}
        segmenter = OracleSegmenter(truth)
    else:
        from grounded.models.registry import load_backend

        segmenter = load_backend(args.segmenter, "segmenter", torch.device("cpu"), torch.float32,
                                 local_files_only=not args.online)
    at85, at90, per_click = [], [], []
    for path, detections in items:
        image = load_image(path)
        features = segmenter.encode([image])
        for target in detections.mask:
            if target.sum() < 1000:
                continue
            state = {"logits": None}

            def click(points, labels, features=features, state=state):
                tick = time.perf_counter()
                answer = decode_click(segmenter, features, PointPrompt.of(points, labels, mask_logits=state["logits"]))
                per_click.append(time.perf_counter() - tick)
                state["logits"] = answer.logits
                return answer.mask

            ious = click_curve(click, target, max_clicks=args.max_clicks)
            at85.append(noc(ious, 0.85, args.max_clicks))
            at90.append(noc(ious, 0.90, args.max_clicks))
    print(f"{args.segmenter}: {len(at90)} Car Parts objects (>= 1000 px) in {len(items)} images, at most "
          f"{args.max_clicks} clicks: NoC@85 {np.mean(at85):.2f}, NoC@90 {np.mean(at90):.2f}; "
          f"{statistics.median(per_click) * 1000:.0f} ms per click (median; load average {load_average()})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server", help="ms per click on the server, full-size random weights")
    s.add_argument("--rows", nargs="+", default=["sam-vit-b", "sam2.1-hiera-tiny"])
    s.add_argument("--clicks", type=int, default=20)
    s.add_argument("--compile", action="store_true", help="each row also with the mask decoder compiled (--compile)")
    s.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "grounded-bench")
    b = sub.add_parser("browser", help="click -> mask on screen in headless Chromium, tiny models")
    b.add_argument("--clicks", type=int, default=20)
    n = sub.add_parser("noc", help="NoC@85 / NoC@90 on Car Parts")
    n.add_argument("--segmenter", default="oracle", help="oracle (default) or a SAM-family checkpoint")
    n.add_argument("--images", type=int, default=10)
    n.add_argument("--max-clicks", type=int, default=20)
    n.add_argument("--online", action="store_true", help="allow downloading --segmenter")
    args = parser.parse_args(argv)
    {"server": run_server, "browser": run_browser, "noc": run_noc}[args.mode](args)


if __name__ == "__main__":
    main()
