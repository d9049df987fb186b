"""Shared fixtures: tiny randomly initialised models saved to disk and loaded by path, real photos.

Nothing here downloads anything. ``../shared/data`` (beside the repository) is used when present; tests
that need it skip cleanly when it is absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BERT_VOCAB = SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"

warnings.filterwarnings("ignore", message=".*OpenCV.*")


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; skips the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} not present")
    return path


@pytest.fixture(scope="session")
def shared():
    """``shared("video", "bedroom.mp4")``: :func:`shared_path` as a fixture (``from conftest import`` finds
    whichever conftest.py loaded first)."""
    return shared_path


@pytest.fixture(scope="session")
def bert_vocab_file() -> Path | None:
    """BERT's real vocabulary (../shared/data) or None: without it the tiny detector's tokens are a generated
    filler vocabulary, so a test that checks what the tiny models find skips (``pytest.skip``) on None."""
    return BERT_VOCAB if BERT_VOCAB.is_file() else None


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(detector folder, segmenter folder) of tiny models, saved like any user checkpoint."""
    from grounded.testing.tiny import build_tiny_models

    vocab = BERT_VOCAB if BERT_VOCAB.is_file() else None
    return build_tiny_models(tmp_path_factory.mktemp("tiny_models"), vocab_file=vocab)


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_dirs):
    """A Predictor on the tiny models with thresholds low enough that random weights yield detections."""
    from grounded import Predictor

    detector, segmenter = tiny_model_dirs
    return Predictor(str(detector), str(segmenter), box_threshold=0.2, text_threshold=0.0)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo (truck.jpg) when ../shared/data is present, else a generated RGB image."""
    from grounded.utils.images import load_image

    path = SHARED_DATA / "images" / "truck.jpg"
    if path.is_file():
        return load_image(path)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(240, 360, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def photo_path(tmp_path_factory, photo) -> Path:
    path = SHARED_DATA / "images" / "truck.jpg"
    if path.is_file():
        return path
    from PIL import Image

    out = tmp_path_factory.mktemp("photo") / "generated.png"
    Image.fromarray(photo).save(out)
    return out
