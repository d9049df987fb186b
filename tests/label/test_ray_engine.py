"""The Ray engine writes exactly what the in-process engine writes, and survives a dead worker or driver.

One local Ray (2 CPUs) is started for the module and shut down after it. Without Ray importable, the
engine's error names the extra (that test needs no cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from grounded.cli import main
from grounded.errors import InputError
from grounded.label import label
from grounded.testing.fake import FAKE_FLAGS, FakePredictor, make_images

REPO = Path(__file__).resolve().parents[2]
CLASSES = "car, wheel, dog"
FORMATS = ["coco", "yolo", "masks"]


def test_without_ray_the_error_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    make_images(tmp_path / "images", 2)
    with pytest.raises(InputError, match=r'pip install "grounded\[ray\]"'):
        label(tmp_path / "images", CLASSES, tmp_path / "out", predictor=FakePredictor(), engine="ray", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written
    code = main(["label", str(tmp_path / "images"), "--classes", CLASSES, "--out", str(tmp_path / "out"),
                 "--engine", "ray", "--no-progress", *FAKE_FLAGS])
    assert code == 2 and 'grounded: error: engine "ray" needs Ray Data' in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_with_two_workers_writes_the_in_process_files(ray_cluster, tiny_model_dirs, tmp_path, tree_bytes):
    detector, segmenter = tiny_model_dirs
    images = tmp_path / "images"
    make_images(images, 4, size=(72, 96))
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    # one torch thread in both engines: float sums then run in the same order (Ray gives actors 1 thread)
    teacher = dict(detector=str(detector), segmenter=str(segmenter), local_files_only=True, box_threshold=0.2,
                   text_threshold=0.0, max_detections=5, threads=1)
    local = label(images, CLASSES, tmp_path / "local", formats=FORMATS, progress=False, preview=4, **teacher)
    distributed = label(images, CLASSES, tmp_path / "ray", formats=FORMATS, progress=False, preview=4,
                        engine="ray", workers=2, batch_size=2, **teacher)
    assert local.labelled == distributed.labelled == 4 and len(distributed.errors) == 1
    assert sum(local.instances.values()) > 0
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")


def test_cli_batch_of_4_and_ray_write_the_batch_of_1_records(ray_cluster, tiny_model_dirs, mixed_images, tmp_path):
    detector, segmenter = tiny_model_dirs
    common = [str(mixed_images), "--classes", CLASSES, "--detector", str(detector), "--segmenter", str(segmenter),
              "--offline", "--box-threshold", "0.05", "--text-threshold", "0.05", "--no-progress", "--preview", "0",
              "--threads", "1"]  # one thread everywhere (Ray gives actors one): this is about batches, not threads
    runs = {"one": ["--batch-size", "1"], "four": ["--batch-size", "4"],
            "ray": ["--batch-size", "4", "--engine", "ray", "--workers", "2"]}
    for name, flags in runs.items():
        assert main(["label", *common, "--out", str(tmp_path / name), *flags]) == 0
    records = {name: {p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name / "records").rglob("*.json")}
               for name in runs}
    assert len(records["one"]) == 8 and any(b'"detections": [{' in text for text in records["one"].values())
    assert records["four"] == records["one"] and records["ray"] == records["one"]


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(ray_cluster, tmp_path, tree_bytes):
    images = tmp_path / "images"
    make_images(images, 24)
    reference = label(images, CLASSES, tmp_path / "reference", predictor=FakePredictor(), formats=FORMATS,
                      progress=False, preview=0)
    marker = tmp_path / "worker_died"
    dying = partial(FakePredictor, delay=0.02, exit_once=str(marker))  # one actor os._exit()s on its first image
    summary = label(images, CLASSES, tmp_path / "ray", predictor=dying, formats=FORMATS, progress=False, preview=0,
                    engine="ray", workers=2, batch_size=4)
    assert marker.is_file(), "no worker died: the test did not test anything"
    assert summary.processed == reference.processed == 24
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "reference")


def test_a_killed_driver_is_resumed_by_running_again(ray_cluster, tmp_path, tree_bytes):
    images = tmp_path / "images"
    make_images(images, 40)
    label(images, CLASSES, tmp_path / "reference", predictor=FakePredictor(), formats=FORMATS, progress=False, preview=4)
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "grounded.cli", "label", str(images), "--classes", CLASSES, "--out", str(out),
               "--format", *FORMATS, "--preview", "4", "--no-progress", "--engine", "ray", "--workers", "2",
               "--ray-address", ray_cluster.get_runtime_context().gcs_address, *FAKE_FLAGS]
    env = dict(os.environ, GROUNDED_FAKE_DELAY="0.15",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "records").glob("*.json"))) < 6 and driver.poll() is None:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    finished = list((out / "records").glob("*.json"))
    assert 6 <= len(finished) < 40, driver.stderr.read().decode()[-2000:]
    for record in finished:
        json.loads(record.read_text())
    summary = label(images, CLASSES, out, predictor=FakePredictor(), formats=FORMATS, progress=False, preview=4)
    assert summary.resumed >= 6 and summary.resumed + summary.processed == 40
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


def test_soft_masks_refused_on_the_cluster_before_run_json(ray_cluster, tmp_path):
    """As in process: a segmenter without soft masks is refused before run.json, with the message alone."""
    make_images(tmp_path / "images", 2)
    out = tmp_path / "out"
    with pytest.raises(InputError, match="^soft masks need a detector"):
        label(tmp_path / "images", CLASSES, out, predictor=FakePredictor, soft_masks=True, engine="ray", workers=1,
              progress=False, preview=0)
    assert not (out / "run.json").exists()
