"""Fixtures for grounded.clip: tiny Grounding DINO, a tiny SAM whose masks respond to prompts, tiny CLIP.

All random weights, saved to folders and loaded by path like user checkpoints; a handful of generated images.
The tests run single-threaded: on 2 shared cores, tiny models are several times faster that way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data beside the repo
BERT_VOCAB = SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"
CLIP_VOCAB = SHARED_DATA / "vocab" / "clip"
SAM_SEED = 3  # a seed whose random tiny SAM gives masks of ~50 % of the image that differ between boxes


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_path(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} not present")
    return path


@pytest.fixture(scope="session")
def clip_vocab() -> Path:
    """../shared/data/vocab/clip (CLIP's BPE files); skips when absent."""
    return shared_path(CLIP_VOCAB / "vocab.json").parent


@pytest.fixture(scope="session")
def clip_models(tmp_path_factory) -> dict[str, Path]:
    """Folders: detector, segmenter (prompt-responsive, seed 3), other_segmenter (seed 4), clip, other_clip."""
    from grounded.testing.tiny import build_tiny_detector
    from grounded.testing.tiny_clip import build_tiny_clip, build_tiny_prompt_sam

    root = tmp_path_factory.mktemp("clip_models")
    vocab = BERT_VOCAB if BERT_VOCAB.is_file() else None
    return {
        "detector": build_tiny_detector(root / "detector", vocab),
        "segmenter": build_tiny_prompt_sam(root / "segmenter", seed=SAM_SEED),
        "other_segmenter": build_tiny_prompt_sam(root / "other_segmenter", seed=SAM_SEED + 1),
        "clip": build_tiny_clip(root / "clip"),
        "other_clip": build_tiny_clip(root / "other_clip", seed=1),
    }


@pytest.fixture(scope="session")
def clip_predictor(clip_models):
    from grounded import Predictor

    return Predictor(str(clip_models["detector"]), str(clip_models["segmenter"]), device="cpu",
                     box_threshold=0.2, text_threshold=0.2, max_detections=5)


@pytest.fixture(scope="session")
def tiny_clip(clip_models):
    from grounded.clip.encoders import load_clip

    return load_clip(str(clip_models["clip"]), "cpu")


@pytest.fixture(scope="session")
def generated_images(tmp_path_factory) -> Path:
    """Six 96x128 images: a flat background with one coloured square each."""
    root = tmp_path_factory.mktemp("adapter_images")
    rng = np.random.default_rng(0)
    for i in range(6):
        image = np.full((96, 128, 3), 200, np.uint8)
        x, y = rng.integers(0, 80), rng.integers(0, 50)
        image[y : y + 40, x : x + 40] = rng.integers(0, 255, 3)
        Image.fromarray(image).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def trained_adapter(tmp_path_factory, clip_predictor, tiny_clip, generated_images):
    """(result, folder) of one adapter training run on the generated images (100 steps)."""
    from grounded.clip.config import AdapterTrainConfig
    from grounded.clip.train import train_adapter
    from grounded.ontology import Ontology

    out = tmp_path_factory.mktemp("adapter")
    config = AdapterTrainConfig(steps=100, batch_size=2, warmup=5, lr=1e-3, checkpoint_every=50)
    result = train_adapter(generated_images, Ontology.from_prompt("car . wheel ."), clip_predictor, tiny_clip, out, config)
    return result, out


@pytest.fixture(scope="session")
def clip_embeddings() -> tuple[np.ndarray, list[str]]:
    """Real CLIP ViT-B/32 text features of "a {class}" for the 80 COCO classes, (80, 512) fp16, and the names."""
    folder = shared_path(SHARED_DATA / "clip_text_embeddings")
    names = (folder / "coco_names.txt").read_text().split("\n")
    return np.load(folder / "coco_clip_a+cname.npy"), [n for n in names if n]


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """../shared/data/images (real photos); skips when absent."""
    return shared_path(SHARED_DATA / "images")
