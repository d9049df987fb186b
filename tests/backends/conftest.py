"""Fixtures for the backend tests: tiny random models saved like checkpoints, small test images.

Nothing here downloads anything; real vocabularies under ../shared/data are used when present, generated ones
otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_VOCAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vocab"

# detectors ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip_vocab() -> Path | None:
    """CLIP's real BPE files (vocab.json + merges.txt) when ../shared is present, else None (generated)."""
    folder = SHARED_VOCAB / "clip"
    return folder if (folder / "vocab.json").is_file() else None


@pytest.fixture(scope="session")
def bert_vocab() -> Path | None:
    path = SHARED_VOCAB / "bert-base-uncased-vocab.txt"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def load_detector():
    """Load a detector folder through the registry (by its config's model_type), on the CPU in float32."""
    import torch

    from grounded.models.registry import load_backend

    return lambda folder: load_backend(str(folder), "detector", torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def tiny_owlv2_dir(tmp_path_factory, clip_vocab) -> str:
    from grounded.testing.tiny_detectors import build_tiny_owlv2

    return str(build_tiny_owlv2(tmp_path_factory.mktemp("owlv2"), clip_vocab))


@pytest.fixture(scope="session")
def tiny_omdet_turbo_dir(tmp_path_factory, clip_vocab) -> str:
    pytest.importorskip("torchvision", reason="OmDet-Turbo's processor needs torchvision (backends extra)")
    from grounded.testing.tiny_detectors import build_tiny_omdet_turbo

    return str(build_tiny_omdet_turbo(tmp_path_factory.mktemp("omdet_turbo"), clip_vocab))


@pytest.fixture(scope="session")
def tiny_mm_grounding_dino_dir(tmp_path_factory, bert_vocab) -> str:
    from grounded.testing.tiny_detectors import build_tiny_mm_grounding_dino

    return str(build_tiny_mm_grounding_dino(tmp_path_factory.mktemp("mm_grounding_dino"), bert_vocab,
                                            image_size=64))  # 64-px short side: 4x cheaper than the default


@pytest.fixture(scope="session")
def tiny_sam3_dir(tmp_path_factory, clip_vocab) -> str:
    pytest.importorskip("torchvision", reason="SAM 3's processor needs torchvision (the backends extra)")
    if clip_vocab is None:
        pytest.skip("CLIP vocabulary ../shared/data/vocab/clip not present (SAM 3 needs CLIP's real tokenizer)")
    from grounded.testing.tiny_segmenters import build_tiny_sam3

    return str(build_tiny_sam3(tmp_path_factory.mktemp("sam3"), clip_vocab))


@pytest.fixture(scope="session")
def detector_images() -> list[np.ndarray]:
    """Two small RGB uint8 images of different sizes and aspect ratios (landscape, portrait)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(60, 96, 3), dtype=np.uint8),
            rng.integers(0, 256, size=(88, 56, 3), dtype=np.uint8)]


# end of detectors --------------------------------------------------------------------------------------
