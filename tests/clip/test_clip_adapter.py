"""The adapter and the decoder with extra tokens: shapes, equivalence with SamModel, save/load, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grounded.clip.adapter import TextPromptAdapter, read_adapter_record
from grounded.clip.config import AdapterConfig
from grounded.clip.decoding import decode_tokens, decode_with_text
from grounded.errors import InputError, ModelLoadError
from grounded.models.backends.sam import SamSegmenter, boxes_to_sam_frame

BOXES = np.array([[10, 10, 80, 60], [50, 20, 120, 90]], np.float32)  # XYXY pixels of a 96x128 image


@pytest.fixture(scope="module")
def segmenter(clip_models):
    return SamSegmenter.from_pretrained(str(clip_models["segmenter"]), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def embedding(segmenter):
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return segmenter.embed(segmenter.preprocess([image])[0]).clone()


def _features(segmenter, embedding):
    """SamFeatures of the (96, 128) image behind ``embedding``."""
    from grounded.models.backends.sam import SamFeatures

    return SamFeatures(embedding, [(96, 128)], [(96, 128)])


def test_no_extra_tokens_equals_sam_forward(segmenter, embedding):
    reference, ref_iou = segmenter.decode(_features(segmenter, embedding), 0, BOXES, multimask=True)
    boxes = torch.as_tensor(boxes_to_sam_frame(BOXES, (96, 128), segmenter.longest_edge), dtype=torch.float32)
    with torch.no_grad():
        logits, iou = decode_tokens(segmenter.model, embedding, boxes, None, multimask=True)
    torch.testing.assert_close(logits, reference, rtol=0, atol=0)
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=0)


def test_text_tokens_change_masks_and_carry_gradients(segmenter, embedding):
    tokens = torch.randn(2, 4, 16, requires_grad=True)
    boxed, _ = decode_with_text(segmenter, embedding, BOXES, (96, 128), tokens)
    alone, iou = decode_with_text(segmenter, embedding, None, (96, 128), tokens)
    plain, _ = segmenter.decode(_features(segmenter, embedding), 0, BOXES, multimask=False)
    assert boxed.shape == alone.shape == plain.shape == (2, 1, 32, 32) and iou.shape == (2, 1)
    assert (boxed - plain).abs().max() > 1e-3  # the text tokens take part
    (boxed.sum() + alone.sum()).backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    with pytest.raises(InputError, match="one set per box"):
        decode_with_text(segmenter, embedding, BOXES, (96, 128), tokens[:1])


def test_adapter_on_real_clip_vectors(clip_embeddings):
    """Real CLIP ViT-B/32 text features ("a {class}", fp16, not normalised) through a SAM-sized adapter."""
    vectors, names = clip_embeddings
    adapter = TextPromptAdapter(AdapterConfig(clip_dim=512, sam_dim=256, num_tokens=4)).eval()
    raw = torch.as_tensor(vectors[:8].astype(np.float32))
    with torch.no_grad():
        tokens = adapter(raw)
        normalised = adapter(torch.nn.functional.normalize(raw, dim=1))
    assert tokens.shape == (8, 4, 256) and torch.isfinite(tokens).all()
    torch.testing.assert_close(tokens, normalised)  # raw and normalised features give the same tokens
    assert (tokens[0] - tokens[1]).abs().max() > 1e-4  # different classes, different tokens
    with pytest.raises(InputError, match="another CLIP"):
        adapter(torch.zeros(2, 32))


def test_save_load_round_trip_gives_identical_masks(tmp_path, segmenter, embedding, tiny_clip):
    from grounded.clip.runtime import sam_identity

    torch.manual_seed(0)
    adapter = TextPromptAdapter(AdapterConfig(clip_dim=tiny_clip.dim, sam_dim=16, num_tokens=3, hidden_dim=32),
                                sam=sam_identity(segmenter), clip=tiny_clip.identity()).eval()
    adapter.save(tmp_path / "a", note="kept")
    loaded = TextPromptAdapter.load(tmp_path / "a")
    assert loaded.training_record == {"note": "kept"}
    texts = tiny_clip.encode_texts(["wheel", "car"])
    with torch.no_grad():
        before = decode_with_text(segmenter, embedding, BOXES, (96, 128), adapter(texts))
        after = decode_with_text(segmenter, embedding, BOXES, (96, 128), loaded(texts))
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    for path in (tmp_path / "a" / "adapter.json", tmp_path / "a" / "adapter.safetensors"):
        assert read_adapter_record(path)[0]["config"]["num_tokens"] == 3


def test_mismatched_sam_and_clip_are_refused(tmp_path, clip_models, segmenter, tiny_clip):
    from grounded.clip.encoders import load_clip
    from grounded.clip.runtime import ClipTools, sam_identity

    adapter = TextPromptAdapter(AdapterConfig(clip_dim=tiny_clip.dim, sam_dim=16),
                                sam=sam_identity(segmenter), clip=tiny_clip.identity())
    adapter.save(tmp_path / "a")
    other_sam = SamSegmenter.from_pretrained(str(clip_models["other_segmenter"]), torch.device("cpu"), torch.float32)
    with pytest.raises(InputError, match="trained for SAM .*different weights"):
        ClipTools(other_sam, adapter=tmp_path / "a")
    tools = ClipTools(segmenter, clip=str(clip_models["other_clip"]), adapter=tmp_path / "a")
    with pytest.raises(InputError, match="trained for CLIP .*--clip"):
        tools.text_tokens(["wheel"])
    tools = ClipTools(segmenter, adapter=tmp_path / "a")  # no --clip: the recorded one, found by its path
    assert tools.text_tokens(["wheel"]).shape == (1, 4, 16)
    assert tools.clip.identity()["arch"] == load_clip(str(clip_models["clip"])).identity()["arch"]


def test_unreadable_adapters_are_refused(tmp_path):
    with pytest.raises(InputError, match="no text-prompt adapter"):
        TextPromptAdapter.load(tmp_path)
    (tmp_path / "adapter.safetensors").write_bytes(b"")
    (tmp_path / "adapter.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelLoadError, match="not a text-prompt adapter"):
        TextPromptAdapter.load(tmp_path)
    with pytest.raises(InputError, match="positive integer"):
        AdapterConfig(clip_dim=0, sam_dim=16)
