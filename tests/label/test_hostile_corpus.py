"""A folder of broken, odd and hostile files through `grounded label`: the run exits 0, every entry named like
an image is a record or an error row, valid images are labelled at their displayed size, memory stays
bounded, and kill -9 + resume gives the uninterrupted run's bytes."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded.label.records import read_record
from grounded.label.walk import walk_images
from grounded.testing.fake import FAKE_FLAGS

REPO = Path(__file__).resolve().parents[2]
# The 10000 x 10000 bilevel PNG (100 M pixels, under the 120 M pixel cap) alone took > 8 GB before. Labelling
# now peaks at ~1.2 GB (decoded reduced, masks restored one at a time); every export reads that image's
# full-resolution masks one at a time (COCO's part / hole count of one 100 M pixel mask costs ~1.1 GB).
PEAK_RSS_BOUND_MIB = 3072
FORMATS = ("coco", "yolo", "yolo-seg", "voc", "masks", "label-studio")
# Run a command as a child and print the child's peak RSS (kB on Linux) as the last line.
MEASURE = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB but holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def build_corpus(root: Path, large: bool = True) -> tuple[dict[str, tuple[int, int]], set[str]]:
    """Write the corpus (``large``: with a 4000 x 3000 JPEG and a 12 kB PNG declaring 10000 x 10000); return
    ({valid image: displayed (H, W)}, {entries that must be error rows})."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    valid: dict[str, tuple[int, int]] = {}

    def save(name: str, image: Image.Image, hw: tuple[int, int], **kwargs) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, **kwargs)
        valid[name] = hw

    def rgb(h: int, w: int) -> Image.Image:
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    save("good.jpg", rgb(240, 320), (240, 320), quality=90)
    save("UPPER.JPEG", rgb(60, 80), (60, 80))
    save("ünïcode name (1).png", rgb(50, 70), (50, 70))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40 high x 80 wide, displayed 80 high x 40 wide
    save("exif_rotated.jpg", rgb(40, 80), (80, 40), exif=exif)
    save("gray16.png", Image.fromarray(rng.integers(0, 65535, (50, 60), dtype=np.uint16)), (50, 60))
    save("gray.png", Image.fromarray(rng.integers(0, 256, (45, 55), dtype=np.uint8)), (45, 55))
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)), (40, 50))
    save("cmyk.jpg", Image.new("CMYK", (64, 48), (10, 200, 30, 0)), (48, 64))
    palette = rgb(36, 52).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save("palette_transparent.png", palette, (36, 52), transparency=0)
    for h, w in [(1, 1), (3, 2000), (2000, 3), (2000, 1), (1, 2000)]:
        save(f"thin_{h}x{w}.png", rgb(h, w), (h, w))
    if large:
        ramp = np.linspace(0, 255, 4000, dtype=np.float32)
        photo = np.stack([np.broadcast_to(ramp, (3000, 4000))] * 3, axis=-1).astype(np.uint8)
        save("large_4000x3000.jpg", Image.fromarray(photo), (3000, 4000), quality=80)
        sparse = io.BytesIO()
        Image.new("1", (10000, 10000)).save(sparse, format="PNG", optimize=True)  # 12 kB, bilevel, 10000 x 10000
        (root / "sparse_10000.png").write_bytes(sparse.getvalue())
    save("folder.jpg/inside.png", rgb(30, 40), (30, 40))

    errors = {"bomb.png", "truncated.jpg", "zero.jpg", "text.jpg", "dangling.jpg", "folder.jpg", "loop.png"}
    (root / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    good = (root / "good.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a picture\n")
    (root / "dangling.jpg").symlink_to(root / "deleted.jpg")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "notes.txt").write_text("not named like an image: ignored")
    if os.geteuid() != 0:  # root reads anything (test_faults.py simulates the denial instead)
        (root / "unreadable.png").write_bytes((root / "gray.png").read_bytes())
        (root / "unreadable.png").chmod(0)
        errors.add("unreadable.png")
    return valid, errors


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _command(corpus: Path, out: Path, *extra: str, formats: tuple[str, ...] = ("coco", "yolo")) -> list[str]:
    return [sys.executable, "-m", "grounded.cli", "label", str(corpus), "--classes", "car, wheel", "--out", str(out),
            "--format", *formats, "--preview", "4", "--no-progress", *extra]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]], set[str]]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    valid, errors = build_corpus(root)
    return root, valid, errors


@pytest.mark.slow
def test_hostile_corpus_with_the_tiny_models(corpus, tiny_model_dirs, tmp_path):
    root, valid, errors = corpus
    detector, segmenter = tiny_model_dirs
    out = tmp_path / "out"
    models = ["--detector", str(detector), "--segmenter", str(segmenter), "--offline", "--box-threshold", "0.2",
              "--text-threshold", "0", "--max-detections", "3", "--batch-size", "2"]
    done = subprocess.run([sys.executable, "-c", MEASURE, *_command(root, out, *models, formats=FORMATS)],
                          env=_env(GROUNDED_MAX_PIXELS=""), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mib = int(done.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mib < PEAK_RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB"

    entries = walk_images(root)
    records = {rel: read_record(out, rel) for rel in entries}
    assert all(record is not None for record in records.values()), [r for r, rec in records.items() if rec is None]
    failed = {rel for rel, record in records.items() if "error" in record}
    assert errors <= failed, errors - failed
    unexpected = failed - errors
    assert not unexpected, {rel: records[rel]["error"] for rel in unexpected}
    for rel, hw in valid.items():
        record = records[rel]
        assert (record["height"], record["width"]) == hw, rel
        assert all(d["mask"]["size"] == list(hw) for d in record["detections"]), rel
    sparse = records["sparse_10000.png"]  # under the default pixel cap: labelled at full size, exported
    assert (sparse["height"], sparse["width"]) == (10000, 10000)
    coco = {}
    for split_file in (out / "coco").glob("*.json"):
        data = json.loads(split_file.read_text())
        coco.update({image["file_name"]: (image, [a for a in data["annotations"] if a["image_id"] == image["id"]])
                     for image in data["images"]})
    image, annotations = coco["sparse_10000.png"]
    assert (image["height"], image["width"]) == (10000, 10000)
    assert len(annotations) == sum(d["area"] > 0 for d in sparse["detections"])
    assert all(a["segmentation"] and a["area"] > 0 for a in annotations)
    assert "declares 1600 M pixels, over the cap" in records["bomb.png"]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == len(entries) and summary["labelled"] + len(summary["errors"]) == len(entries)


def test_hostile_corpus_kill_9_and_resume_give_the_same_bytes(tmp_path, tree_bytes):
    root = tmp_path / "corpus"
    build_corpus(root, large=False)  # the broken and odd files; the large ones only cost time here
    reference = tmp_path / "reference"
    done = subprocess.run(_command(root, reference, *FAKE_FLAGS), env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(root, killed, *FAKE_FLAGS), env=_env(GROUNDED_FAKE_DELAY="0.3"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((killed / "records").rglob("*.json"))) < 6:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    total = len(walk_images(root))
    assert 6 <= len(list((killed / "records").rglob("*.json"))) < total
    rerun = subprocess.run(_command(root, killed, *FAKE_FLAGS), env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert tree_bytes(killed) == tree_bytes(reference)
