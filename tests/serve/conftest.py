"""Fixtures of the serve tests: a labelling run made by the fake predictor, an app over it with tiny models."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason='grounded serve needs its extra: pip install "grounded[serve]"')

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["car", "wheel", "door"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a live server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(folder: Path) -> Path:
    """A `grounded label` run of 8 generated images (one unreadable) made with FakePredictor: folder/run."""
    from grounded.label import label
    from grounded.testing.fake import FakePredictor, make_images

    images = folder / "images"
    make_images(images, 8, size=(60, 80))
    (images / "sub").mkdir()
    Image.fromarray(np.full((40, 50, 3), 200, dtype=np.uint8)).save(images / "sub" / "grey.png")
    (images / "broken.png").write_bytes(b"not an image")
    label(images, CLASSES, folder / "run", predictor=FakePredictor(), formats=["coco"], preview=0, progress=False)
    return folder / "run"


@pytest.fixture(scope="session")
def clip_vocab(tmp_path_factory) -> Path:
    """CLIP's real BPE files when ../shared/data is present, else a generated vocabulary (random models only)."""
    from grounded.testing.tiny_detectors import write_clip_vocab

    folder = REPO.parent / "shared" / "data" / "vocab" / "clip"
    return folder if (folder / "vocab.json").is_file() else write_clip_vocab(tmp_path_factory.mktemp("clip_vocab"))


@pytest.fixture(scope="session")
def tiny_owlv2_dir(tmp_path_factory, clip_vocab) -> Path:
    from grounded.testing.tiny_detectors import build_tiny_owlv2

    return build_tiny_owlv2(tmp_path_factory.mktemp("owlv2"), clip_vocab)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path)


@pytest.fixture
def make_client(request):
    """``make_client(run=None, token=None, engine=..., **create_app kwargs)`` -> a TestClient."""
    from fastapi.testclient import TestClient

    from grounded.serve.app import create_app
    from grounded.serve.engine import Engine
    from grounded.serve.runs import RunView

    def make(run: Path | None = None, engine=None, **kwargs) -> TestClient:
        # the tiny models are built only when a request needs them
        engine = engine if engine is not None else Engine(lambda: request.getfixturevalue("tiny_predictor"))
        app = create_app(engine, RunView(run) if run else None, prompts_dir=REPO / "prompts", **kwargs)
        return TestClient(app)

    return make


def review_target(run: Path, least: int = 2) -> tuple[str, dict]:
    """(image path, record) of the first image of the run with at least ``least`` detections."""
    from grounded.label.manifest import read_manifest
    from grounded.label.records import image_relatives, read_record

    root = Path(read_manifest(run)["images_root"])
    for rel in image_relatives(root, run):
        record = read_record(run, rel)
        if record and "error" not in record and len(record["detections"]) >= least:
            return rel, record
    raise AssertionError("the fake run has no image with enough detections")


@pytest.fixture(scope="session")
def car_parts() -> Path:
    """The Car Parts COCO annotations (../shared/data/car_parts/train); skips when ../shared is absent."""
    path = REPO.parent / "shared" / "data" / "car_parts" / "train" / "annotations.json"
    if not path.is_file():
        pytest.skip(f"shared data {path} not present")
    return path


def import_coco_run(annotations: Path, folder: Path, indices: list[int], edit=None) -> Path:
    """A `grounded label` run at ``folder/run`` whose records are the COCO labels of images ``indices`` (copied
    to ``folder/images``), each passed through ``edit(relative, detections) -> detections`` first when given
    (a teacher's mistakes)."""
    import shutil

    from grounded.formats.coco import CocoDataset
    from grounded.io.detections_json import detections_to_json
    from grounded.label.manifest import build_manifest, start_run
    from grounded.label.records import write_record
    from grounded.ontology import Ontology

    dataset = CocoDataset(str(annotations))
    root, run = folder / "images", folder / "run"
    root.mkdir(parents=True)
    start_run(run, build_manifest(root, Ontology.from_classes(dataset.classes), {"source": "COCO labels"},
                                  {"train": 1.0}, 0))
    for index in indices:
        path, detections = dataset[index]
        rel = Path(path).name
        shutil.copyfile(path, root / rel)
        if edit is not None:
            detections = edit(rel, detections)
        write_record(run, detections_to_json(detections, detections.mask.shape[1:], rel))
    return run
