"""Memory stays flat as the folder grows: label 200 and 2,000 generated images with the fake predictor.

Each size runs in a fresh process (``grounded.label`` end to end: records, COCO + YOLO-seg + mask exports,
preview, summary) and reports its peak RSS; the two peaks must be within 10% of each other. Also reports
images per second of the machinery alone (the fake predictor's own time subtracted).

    python benchmarks/label_memory.py                 # 2,000 images of 240x320 in a temporary folder
    python benchmarks/label_memory.py --images 500 --keep /tmp/bench
    python benchmarks/label_memory.py --export OUT    # peak RSS of re-exporting each format of the run in OUT

``--export`` rebuilds one format at a time from an existing run's records (no model), each in a fresh process,
so a run with full-size masks (e.g. a 10000 x 10000 image) shows what each format's writer costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = ["coco", "yolo-seg", "masks"]


def make_images(folder: Path, count: int, height: int = 240, width: int = 320) -> None:
    """Distinct, compressible images: a per-image colour with a lighter square (PNG, a few kB each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = (i % 251, (i // 251) % 251, (37 * i) % 251)
        image[40:120, 60 + i % 100 : 160 + i % 100] += 4
        Image.fromarray(image).save(folder / f"img_{i:05d}.png", compress_level=1)


def child(images: Path, out: Path) -> None:
    """Run one labelling job in this process; print its figures as JSON."""
    from grounded.label import label
    from grounded.testing.fake import FakePredictor

    started = time.perf_counter()
    summary = label(images, "car, wheel, dog", out, predictor=FakePredictor(), formats=FORMATS, progress=False)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    print(json.dumps({
        "images": summary.images, "instances": sum(summary.instances.values()), "peak_rss_mib": round(peak_mib, 1),
        "seconds": round(seconds, 2), "predictor_seconds": summary.model_seconds,
        "machinery_images_per_second": round(summary.images / max(seconds - summary.model_seconds, 1e-9), 1),
    }))


def export_child(out: Path, fmt: str) -> None:
    """Re-export one format of the run in ``out`` in this process; print its figures as JSON."""
    from grounded.label import export_run

    started = time.perf_counter()
    stats = export_run(out, [fmt])
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"format": fmt, "images": stats.labelled, "peak_rss_mib": round(peak_mib, 1),
                      "seconds": round(time.perf_counter() - started, 2)}))


def export_peaks(out: Path) -> int:
    from grounded.label import FORMATS as ALL_FORMATS

    for fmt in ALL_FORMATS:
        proc = subprocess.run([sys.executable, __file__, "--export-child", str(out), fmt],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{fmt:>12}: peak RSS {r['peak_rss_mib']:.1f} MiB, {r['seconds']:.1f} s ({r['images']} images)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--export", type=Path, metavar="OUT", help="re-export each format of this run, one per process")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--export-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if args.export_child:
        export_child(Path(args.export_child[0]), args.export_child[1])
        return 0
    if args.export:
        return export_peaks(args.export)
    work = args.keep or Path(tempfile.mkdtemp(prefix="label_memory_"))
    big, small = work / "images_big", work / "images_small"
    if not big.is_dir():
        make_images(big, args.images)
    if not small.is_dir():
        small.mkdir(parents=True)
        for path in sorted(big.iterdir())[: args.small]:
            os.link(path, small / path.name)
    results = {}
    for name, folder in (("small", small), ("big", big)):
        out = work / f"out_{name}"
        proc = subprocess.run([sys.executable, __file__, "--child", str(folder), str(out)],
                              capture_output=True, text=True, check=True)
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    s, b = results["small"], results["big"]
    growth = b["peak_rss_mib"] / s["peak_rss_mib"] - 1
    print(f"peak RSS at {s['images']:>5} images: {s['peak_rss_mib']:.1f} MiB")
    print(f"peak RSS at {b['images']:>5} images: {b['peak_rss_mib']:.1f} MiB  ({growth:+.1%})")
    print(f"machinery: {b['machinery_images_per_second']:.1f} images/s over {b['images']} images "
          f"({b['seconds']:.1f} s total, {b['predictor_seconds']:.1f} s inside the fake predictor, {b['instances']} instances)")
    ok = abs(growth) <= 0.10
    print("PASS: within 10%" if ok else "FAIL: peak RSS grew by more than 10%")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
