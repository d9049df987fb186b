"""Label at scale: the engines' machinery, batched full-size models, and a projection for N workers.

(a) Machinery (no models: the fake predictor): ``grounded.label`` in process vs the Ray engine with 1 and 2
    workers, on 200 and 2,000 generated images (240 x 320 PNG). Each run is a fresh process (the driver); it
    reports images/s end to end (records, COCO export, summary; Ray start-up and actor start-up included,
    ``ray.init`` itself reported apart) and the driver's peak RSS. PASS when each engine's driver peak RSS
    at 2,000 images is within 10% of its peak at 200.
(b) Models: full-size Grounding DINO (Swin-T) + SAM ViT-B with random weights (cost as trained ones; see
    benchmarks/_common.py) on real photos: ``batch_size`` 1 vs 4, decoding prefetched, s/img in one process,
    one discarded warm-up image first.
(c) A PROJECTION (computed, not measured) for N workers from (b)'s per-image cost and (a)'s single-writer
    rate.

    python benchmarks/label_scale.py --shared ../shared/data              # (a), (b) on 4 photos, (c)
    python benchmarks/label_scale.py --skip-models --seconds-per-image 0.5  # (a) and (c) for a GPU's cost
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from label_memory import make_images  # noqa: E402

CLASSES = "car, wheel, dog"
ENGINES = (("in-process", "local", 1), ("ray, 1 worker", "ray", 1), ("ray, 2 workers", "ray", 2))


def child_machinery(images: Path, out: Path, engine: str, workers: int, batch_size: int, ray_cpus: int) -> None:
    """One labelling run with the fake predictor in this process (the driver); print its figures as JSON."""
    from grounded.label import label
    from grounded.testing.fake import FakePredictor

    init_seconds = 0.0
    if engine == "ray":
        import ray

        tick = time.perf_counter()
        ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        init_seconds = time.perf_counter() - tick
    summary = label(images, CLASSES, out, predictor=FakePredictor, formats=["coco"], preview=0, progress=False,
                    engine=engine, workers=workers, batch_size=batch_size)
    print(json.dumps({"images": summary.processed, "seconds": summary.seconds, "init_seconds": round(init_seconds, 2),
                      "images_per_second": summary.images_per_second,
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def machinery(work: Path, sizes: tuple[int, int], batch_size: int, ray_cpus: int) -> tuple[list[str], bool, float]:
    """(printed lines, flat RSS for every engine, best single-writer images/s)."""
    big = work / f"images_{sizes[1]}"
    small = work / f"images_{sizes[0]}"
    if not big.is_dir():
        make_images(big, sizes[1])
    if not small.is_dir():
        small.mkdir(parents=True)
        for path in sorted(big.iterdir())[: sizes[0]]:
            os.link(path, small / path.name)
    lines = [f"(a) machinery, fake predictor, batch size {batch_size}, Ray with {ray_cpus} CPUs, actors 0.5 CPU each",
             f"{'engine':<16} {'images':>6} {'img/s':>8} {'seconds':>8} {'ray.init s':>10} {'driver peak RSS':>16}"]
    flat, best = True, 0.0
    for name, engine, workers in ENGINES:
        peaks = []
        for folder in (small, big):
            out = work / f"out_{engine}{workers}_{folder.name}"
            command = [sys.executable, __file__, "--child", str(folder), str(out), engine, str(workers),
                       str(batch_size), str(ray_cpus)]
            proc = subprocess.run(command, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"{name} on {folder.name} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            peaks.append(row["peak_rss_mib"])
            best = max(best, row["images_per_second"])
            lines.append(f"{name:<16} {row['images']:>6} {row['images_per_second']:>8.1f} {row['seconds']:>8.1f} "
                         f"{row['init_seconds']:>10.1f} {row['peak_rss_mib']:>12.1f} MiB")
        growth = peaks[1] / peaks[0] - 1
        flat &= abs(growth) <= 0.10
        lines.append(f"{'':<16} driver peak RSS {sizes[0]} -> {sizes[1]} images: {growth:+.1%}")
    lines.append("PASS: every driver's peak RSS within 10% between the two sizes" if flat
                 else "FAIL: a driver's peak RSS grew by more than 10%")
    return lines, flat, best


def models(work: Path, cache: Path, n_images: int, batches: list[int]) -> tuple[list[str], dict[int, float]]:
    """Full-size random-weight models on ``n_images`` photos: s/img per batch size, in this process."""
    from grounded import Predictor
    from grounded.label import label

    photos = sorted(C.PHOTOS.glob("*.jp*g"))[:n_images] if C.PHOTOS.exists() else []
    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    if photos:
        for path in photos:
            if not (folder / path.name).exists():
                (folder / path.name).symlink_to(path.resolve())
    else:
        from PIL import Image

        for i, image in enumerate(C.photos(n_images)):
            Image.fromarray(image).save(folder / f"generated_{i}.jpg")
    det = C.build_detector(cache / "dino-tiny")
    sam = C.build_segmenter(cache / "sam-vit-b")
    predictor = Predictor(str(det), str(sam), local_files_only=True)
    warm = C.photos(1)[0]
    predictor.set_image(warm)
    predictor.segment(CLASSES)  # first-touch costs (page faults, kernel selection) are not timed
    sizes = ", ".join(f"{p.name} {_size(p)}" for p in sorted(folder.iterdir()))
    lines = [f"(b) full-size Grounding DINO (Swin-T) + SAM ViT-B, random weights, {n_images} photos: {sizes}",
             f"{'batch size':>10} {'s/img (end to end)':>19} {'s/img (in the models)':>22}"]
    per_image: dict[int, float] = {}
    for batch in batches:
        summary = label(folder, CLASSES, work / f"models_b{batch}", predictor=predictor, batch_size=batch, prefetch=2,
                        formats=["coco"], preview=0, progress=False)
        per_image[batch] = summary.seconds / max(summary.processed, 1)
        lines.append(f"{batch:>10} {per_image[batch]:>19.2f} {summary.model_seconds / max(summary.processed, 1):>22.2f}")
    base = per_image[batches[0]]
    lines += [f"batch {b} vs {batches[0]}: {base / per_image[b]:.2f}x the throughput" for b in batches[1:]]
    lines.append(f"peak RSS of this process: {C.peak_rss_gib():.2f} GiB")
    return lines, per_image


def _size(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return f"{image.width}x{image.height}"


def projection(seconds_per_image: float, writer_rate: float, source: str) -> list[str]:
    lines = [f"(c) PROJECTION, computed, not measured: N workers at {seconds_per_image:.2f} s/img each ({source}),",
             f"    one driver writing records at <= {writer_rate:.0f} img/s (the best end-to-end rate of (a): a floor of the writer)",
             f"{'workers':>8} {'img/s':>9} {'100k images':>12} {'1M images':>12}"]
    for n in (1, 2, 4, 8, 16, 32, 64, 128):
        rate = min(n / seconds_per_image, writer_rate)
        lines.append(f"{n:>8} {rate:>9.2f} {_duration(1e5 / rate):>12} {_duration(1e6 / rate):>12}")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs=2, default=[200, 2000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--batch-size", type=int, default=8, help="(a)'s batch size, all engines (default 8)")
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--model-images", type=int, default=4, help="(b)'s photos (default 4)")
    parser.add_argument("--model-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--skip-models", action="store_true", help="no (b); (c) uses --seconds-per-image")
    parser.add_argument("--seconds-per-image", type=float, help="(c)'s per-worker cost (default: (b)'s best)")
    parser.add_argument("--shared", type=Path, default=C.SHARED, help="folder holding images/ and vocab/")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "grounded-bench")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        images, out, engine, workers, batch, cpus = args.child
        child_machinery(Path(images), Path(out), engine, int(workers), int(batch), int(cpus))
        return 0
    C.PHOTOS, C.BERT_VOCAB = args.shared / "images", args.shared / "vocab" / "bert-base-uncased-vocab.txt"
    work = args.keep or Path(tempfile.mkdtemp(prefix="label_scale_"))
    load = os.getloadavg()
    print(f"label_scale: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at start; work folder {work}")
    lines, flat, writer_rate = machinery(work, tuple(args.images), args.batch_size, args.ray_cpus)
    print("\n".join(lines), flush=True)
    cost, source = args.seconds_per_image, "given"
    if not args.skip_models:
        model_lines, per_image = models(work, args.cache_dir, args.model_images, args.model_batches)
        print("\n" + "\n".join(model_lines), flush=True)
        if cost is None:
            best = min(per_image, key=per_image.get)
            cost, source = per_image[best], f"(b)'s batch {best} on this machine's CPUs"
    if cost is not None:
        print("\n" + "\n".join(projection(cost, writer_rate, source)))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
