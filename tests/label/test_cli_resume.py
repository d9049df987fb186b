"""Crash and resume for real: kill -9 a `python -m grounded.cli label` run mid-way, run it again, compare."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from grounded.testing.fake import FAKE_FLAGS, make_images

REPO = Path(__file__).resolve().parents[2]


def _command(images: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "grounded.cli", "label", str(images), "--classes", "car, wheel, dog",
            "--out", str(out), "--format", "coco", "yolo", "masks", "--no-progress", "--preview", "4", *FAKE_FLAGS]


def _env(delay: float) -> dict[str, str]:
    env = dict(os.environ, GROUNDED_FAKE_DELAY=str(delay))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_kill_9_then_rerun_gives_the_uninterrupted_files(tmp_path, tree_bytes):
    images = tmp_path / "images"
    make_images(images, 40)
    reference = tmp_path / "reference"
    done = subprocess.run(_command(images, reference), env=_env(0), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "instances" in done.stdout  # the summary table

    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(images, killed), env=_env(0.05), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((killed / "records").glob("*.json"))) < 12:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    finished = list((killed / "records").glob("*.json"))
    assert 12 <= len(finished) < 40, "the run should have been killed half-way"
    for record in finished:  # atomic writes: no half-written record
        json.loads(record.read_text())
    assert not (killed / "coco").exists()

    rerun = subprocess.run(_command(images, killed), env=_env(0), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert tree_bytes(killed) == tree_bytes(reference)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed"] >= 12 and summary["resumed"] + summary["processed"] == 40
