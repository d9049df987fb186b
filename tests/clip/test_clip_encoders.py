"""CLIP encoders: the transformers backend on a tiny CLIP, the open_clip backend where it imports."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from grounded.clip.encoders import OpenClipEncoder, TransformersClip, load_clip
from grounded.clip.identity import identity_mismatch
from grounded.errors import InputError, ModelLoadError


def test_texts_and_images_are_normalised_and_texts_cached(tiny_clip):
    texts = tiny_clip.encode_texts(["a wheel", "a car", "a wheel"])
    assert texts.shape == (3, tiny_clip.dim) and texts.dtype == torch.float32
    torch.testing.assert_close(texts.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(texts[0], texts[2])
    assert not torch.allclose(texts[0], texts[1])
    calls = []
    original = tiny_clip._texts
    tiny_clip._texts = lambda batch: calls.append(list(batch)) or original(batch)
    try:
        again = tiny_clip.encode_texts(["a car", "a bus"])
    finally:
        del tiny_clip._texts
    assert calls == [["a bus"]]  # "a car" came from the cache
    torch.testing.assert_close(again[0], texts[1])
    crops = [np.zeros((10, 20, 3), np.uint8), np.full((40, 30, 3), 200, np.uint8)]
    images = tiny_clip.encode_images(crops)
    assert images.shape == (2, tiny_clip.dim)
    torch.testing.assert_close(images.norm(dim=1), torch.ones(2))
    assert tiny_clip.encode_texts([]).shape == (0, tiny_clip.dim)


def test_bad_inputs_name_the_input(tiny_clip):
    with pytest.raises(InputError, match="non-empty strings"):
        tiny_clip.encode_texts("a wheel")
    with pytest.raises(InputError, match="crop 0"):
        tiny_clip.encode_images([np.zeros((10, 10), np.uint8)])


def test_identity_survives_reload_and_bf16_but_not_other_weights(clip_models, tiny_clip):
    same = TransformersClip.from_pretrained(str(clip_models["clip"]), "cpu", dtype="bfloat16").identity()
    assert identity_mismatch(tiny_clip.identity(), same) is None
    other = load_clip(str(clip_models["other_clip"]), "cpu").identity()
    assert "different weights" in identity_mismatch(tiny_clip.identity(), other)


def test_real_clip_tokenizer_ids(tmp_path, clip_vocab):
    from grounded.testing.tiny_clip import build_tiny_clip

    clip = load_clip(str(build_tiny_clip(tmp_path / "clip", vocab_dir=clip_vocab)))
    ids = clip.processor.tokenizer("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # CLIP's own ids (data README)
    assert clip.encode_texts(["a photo of a cat"]).shape == (1, clip.dim)


def test_missing_clip_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelLoadError, match="clip model folder"):
        load_clip(str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="clip must be"):
        load_clip(12)


def test_open_clip_absent_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # makes `import open_clip` raise ImportError
    with pytest.raises(ModelLoadError, match="openclip"):
        load_clip("open_clip:ViT-B-32")


class _FakeOpenClipModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.text = torch.nn.EmbeddingBag(100, 8)
        self.image = torch.nn.Linear(3, 8)
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(100.0), dtype=torch.float32))

    def encode_text(self, tokens):
        return self.text(tokens)

    def encode_image(self, pixels):
        return self.image(pixels.mean(dim=(2, 3)))


def test_open_clip_backend_plumbing_with_a_stub_module(monkeypatch):
    """The backend's calls (create_model_and_transforms, get_tokenizer, encode_*) against a stand-in module."""
    calls = {}

    def create(arch, pretrained=None):
        calls["create"] = (arch, pretrained)
        return _FakeOpenClipModel(), None, lambda im: torch.tensor(np.array(im), dtype=torch.float32).permute(2, 0, 1)

    fake = types.SimpleNamespace(create_model_and_transforms=create,
                                 get_tokenizer=lambda arch: lambda texts: torch.tensor([[len(t) % 100, 1] for t in texts]))
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    clip = load_clip("open_clip:ViT-B-32@laion2b_s34b_b79k")
    assert isinstance(clip, OpenClipEncoder) and calls["create"] == ("ViT-B-32", "laion2b_s34b_b79k")
    assert clip.name == "open_clip:ViT-B-32@laion2b_s34b_b79k" and clip.dim == 8
    assert clip.logit_scale == pytest.approx(100.0)
    torch.testing.assert_close(clip.encode_texts(["a", "bb"]).norm(dim=1), torch.ones(2))
    torch.testing.assert_close(clip.encode_images([np.ones((5, 7, 3), np.uint8)]).norm(dim=1), torch.ones(1))
    assert clip.identity()["backend"] == "open_clip"


def test_open_clip_backend_for_real():
    try:
        import open_clip  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision's extension failing to load
        pytest.skip(f"open_clip_torch not importable here ({type(exc).__name__}); it needs torchvision")
    clip = load_clip("open_clip:ViT-B-32")  # random weights, built offline
    texts = clip.encode_texts(["a wheel", "a car"])
    assert texts.shape == (2, 512)
    torch.testing.assert_close(texts.norm(dim=1), torch.ones(2))
    assert clip.encode_images([np.zeros((50, 60, 3), np.uint8)]).shape == (1, 512)
