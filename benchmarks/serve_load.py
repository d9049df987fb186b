"""`grounded serve` under load: 64 concurrent uploads of a 2250x1500 photo, with and without the admission bound.

For each setting a fresh server runs in a subprocess on 127.0.0.1 (a real uvicorn, the tiny models of
grounded/testing/, loaded by path with --offline). One request loads the models; then a bounded client (one
thread per upload, at most --concurrency at once, each with a timeout) sends every upload at the same moment.
Reported per setting: the answers by status (a 503 must carry Retry-After), the server's RSS once the models
are loaded and its peak during the burst (/proc/PID/status, sampled every 10 ms, and VmHWM), and the wall time.

    python benchmarks/serve_load.py                          # --max-queue 4 (the default) vs 1000 (no bound)
    python benchmarks/serve_load.py --uploads 64 --bounds 4 8 1000 --keep /tmp/serve_load

Traffic goes to 127.0.0.1 only. The photo is ../shared/data/images/truck.jpg resized to 2250x1500 when present,
else a generated image of that size.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PHOTO_SIZE = (2250, 1500)  # width, height


def make_photo(folder: Path) -> Path:
    """A 2250x1500 JPEG: the shared truck photo resized, else a smooth generated image."""
    source = SHARED / "images" / "truck.jpg"
    if source.is_file():
        image = Image.open(source).convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    else:
        yy, xx = np.mgrid[: PHOTO_SIZE[1], : PHOTO_SIZE[0]]
        image = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    path = folder / "photo_2250x1500.jpg"
    image.save(path, quality=90)
    return path


def tiny_models(folder: Path) -> tuple[Path, Path]:
    from grounded.testing.tiny import build_tiny_models

    if (folder / "segmenter" / "config.json").is_file():
        return folder / "detector", folder / "segmenter"
    vocab = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
    return build_tiny_models(folder, vocab_file=vocab if vocab.is_file() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def multipart(photo: bytes, prompt: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n{prompt}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + photo + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str, timeout: float) -> tuple[int | str, str | None, float]:
    """(status or the error's name, Retry-After, seconds) of one upload."""
    tick = time.perf_counter()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status, response.headers.get("Retry-After"), time.perf_counter() - tick
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, exc.headers.get("Retry-After"), time.perf_counter() - tick
    except OSError as exc:  # a reset or a timeout: reported, never retried
        return type(exc).__name__, None, time.perf_counter() - tick


def run_setting(max_queue: int, models: tuple[Path, Path], photo: bytes, args: argparse.Namespace,
                work: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(work / f"server_{max_queue}.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "grounded.cli", "serve", "--port", str(port), "--offline", "--detector",
         str(models[0]), "--segmenter", str(models[1]), "--box-threshold", "0.2", "--text-threshold", "0",
         "--max-queue", str(max_queue)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/v1/health", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"the server did not start: see {log.name}") from None
                time.sleep(0.1)
        body, content_type = multipart(photo, args.prompt)
        first = post(url + "/v1/segment", body, content_type, args.timeout)  # loads the models
        if first[0] != 200:
            raise SystemExit(f"the warm-up request failed ({first[0]}): see {log.name}")
        loaded = rss_mib(server.pid)
        peak, stop = [loaded], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(rss_mib(server.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = threading.Barrier(args.uploads)

        def one(_: int):
            start.wait()
            return post(url + "/v1/segment", body, content_type, args.timeout)

        tick = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.uploads) as pool:
            answers = list(pool.map(one, range(args.uploads)))
        wall = time.perf_counter() - tick
        stop.set()
        sampler.join()
        health = json.loads(urllib.request.urlopen(url + "/v1/health", timeout=5).read())
        counts: dict[str, int] = {}
        for status, _, _ in answers:
            counts[str(status)] = counts.get(str(status), 0) + 1
        busy = [a for a in answers if a[0] == 503]
        return {
            "max_queue": max_queue, "uploads": args.uploads, "statuses": counts,
            "503_with_retry_after": sum(1 for a in busy if a[1] and a[1].isdigit()), "503": len(busy),
            "retry_after_s": sorted({int(a[1]) for a in busy if a[1] and a[1].isdigit()}),
            "rss_loaded_mib": round(loaded), "rss_peak_mib": round(max(peak)),
            "vmhwm_mib": round(rss_mib(server.pid, "VmHWM")),
            "latency_200_median_s": round(statistics.median([a[2] for a in answers if a[0] == 200] or [0]), 2),
            "wall_s": round(wall, 1), "turned_away": health["turned_away"],
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=64, help="concurrent uploads (default %(default)s)")
    parser.add_argument("--bounds", type=int, nargs="+", default=[4, 1000],
                        help="--max-queue of each server (default: 4, the default, and 1000: no bound at 64)")
    parser.add_argument("--prompt", default="car . wheel")
    parser.add_argument("--timeout", type=float, default=600, help="per upload, seconds (default %(default)s)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (models, photo, server logs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        models = tiny_models(work / "models")
        photo = make_photo(work).read_bytes()
        print(f"photo {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG, {len(photo) / 2**20:.2f} MB; {args.uploads} concurrent "
              f"uploads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        for bound in args.bounds:
            print(json.dumps(run_setting(bound, models, photo, args, work)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
