"""Tiny randomly initialised MM-Grounding-DINO, OWLv2 and OmDet-Turbo, saved to folders like any checkpoint.

Each ``build_tiny_*(folder)`` writes config, safetensors weights and processor files with ``save_pretrained``,
so tests, benchmarks' smoke runs and examples load them through the path a user's checkpoint takes
(``load_backend(folder, "detector", ...)``). Each builds in well under a second; outputs are random but
deterministic for a given ``seed``.

Tokenizers, offline:

- MM-Grounding-DINO reads BERT WordPiece with BERT's special ids (see :mod:`grounded.testing.tiny`).
- OWLv2 and OmDet-Turbo read CLIP's byte-level BPE: ``CLIPTokenizer.from_pretrained(clip_vocab)`` on a folder
  with ``vocab.json`` + ``merges.txt`` (``../shared/data/vocab/clip`` has CLIP's real ones), else a small
  generated vocabulary (printable ASCII characters, no merges: every word splits into characters) whose
  end-of-text token has the highest id, as CLIP's text tower requires (it pools at ``argmax(input_ids)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from grounded.testing.tiny import build_tiny_detector

# The same tiny Swin for every tiny detector (see ../shared NOTES: window 4, stages of 8..64 channels).
_SWIN = dict(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4)


def write_clip_vocab(folder: str | Path) -> Path:
    """A small CLIP BPE vocabulary (``vocab.json`` + ``merges.txt``) in ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(33, 127)]  # printable ASCII is its own byte-level symbol
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def clip_tokenizer(clip_vocab: str | Path | None, scratch: Path, max_length: int):
    """CLIP tokenizer on the folder ``clip_vocab``, or on a generated vocabulary written under ``scratch``."""
    from transformers import CLIPTokenizer

    folder = Path(clip_vocab) if clip_vocab else write_clip_vocab(Path(scratch) / "_clip_vocab")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=max_length)


def _text_ids(tokenizer) -> dict[str, int]:
    return dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _save(folder: Path, model, processor) -> Path:
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    scratch = folder / "_clip_vocab"
    if scratch.is_dir():
        for f in scratch.iterdir():
            f.unlink()
        scratch.rmdir()
    return folder


def build_tiny_mm_grounding_dino(folder: str | Path, vocab_file: str | Path | None = None, seed: int = 0,
                                 image_size: int = 128) -> Path:
    """Save a tiny MM-Grounding-DINO with its (Grounding DINO) processor to ``folder``; return the folder.

    The architecture is the tiny Grounding DINO of :func:`grounded.testing.tiny.build_tiny_detector` (same
    config values, same processor), built as ``MMGroundingDinoForObjectDetection``.
    """
    from transformers import GroundingDinoConfig, MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    folder = build_tiny_detector(folder, vocab_file, seed, image_size)  # writes the processor files too
    config = GroundingDinoConfig.from_pretrained(folder).to_dict()
    config.pop("model_type", None)
    torch.manual_seed(seed)
    model = MMGroundingDinoForObjectDetection(MMGroundingDinoConfig(**config)).eval()
    model.save_pretrained(folder)  # replaces the Grounding DINO config and weights
    return folder


def build_tiny_owlv2(folder: str | Path, clip_vocab: str | Path | None = None, seed: int = 0,
                     image_size: int = 64) -> Path:
    """Save a tiny OWLv2 (ViT with 16-px patches, 16-token text tower) with its processor to ``folder``."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer(clip_vocab, folder, max_length=16)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, **_text_ids(tokenizer))
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=image_size, patch_size=16)
    torch.manual_seed(seed)
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    model = Owlv2ForObjectDetection(config).eval()
    image_processor = Owlv2ImageProcessorPil(size={"height": image_size, "width": image_size})
    return _save(folder, model, Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer))


def build_tiny_omdet_turbo(folder: str | Path, clip_vocab: str | Path | None = None, seed: int = 0,
                           image_size: int = 64) -> Path:
    """Save a tiny OmDet-Turbo (transformers' Swin backbone, no timm) with its processor to ``folder``.

    ``class_embed_dim`` differs from ``decoder_hidden_dim`` on purpose: transformers 5.x builds the decoder's
    ``task_project`` only then, and its forward needs it (as in the released checkpoint: 512 vs 256).
    """
    from transformers import (
        CLIPTextConfig,
        DetrImageProcessorPil,
        OmDetTurboConfig,
        OmDetTurboForObjectDetection,
        OmDetTurboProcessor,
        SwinConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = clip_tokenizer(clip_vocab, folder, max_length=77)
    backbone = SwinConfig(**{**_SWIN, "image_size": image_size}, out_indices=[2, 3, 4])  # 16, 32, 64 channels
    text = CLIPTextConfig(hidden_size=64, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=77, **_text_ids(tokenizer))
    d = 32
    config = OmDetTurboConfig(
        backbone_config=backbone, text_config=text, use_timm_backbone=False, image_size=image_size,
        apply_layernorm_after_vision_backbone=False,  # its layer norms expect timm's channels-last maps
        text_projection_in_dim=64, text_projection_out_dim=64, class_embed_dim=64, task_encoder_hidden_dim=32,
        encoder_hidden_dim=d, vision_features_channels=[d, d, d], encoder_in_channels=[16, 32, 64],
        encoder_attention_heads=2, encoder_dim_feedforward=32, decoder_hidden_dim=d, decoder_num_heads=2,
        decoder_num_layers=2, decoder_dim_feedforward=32, decoder_num_points=2, num_queries=20)
    torch.manual_seed(seed)
    model = OmDetTurboForObjectDetection(config).eval()
    # Random init gives every box its anchor's size and every query the same best phrase: spread them.
    with torch.no_grad():
        for head in (model.decoder.encoder_bbox_head, *model.decoder.decoder_bbox_head):
            head.layers[-1].weight.normal_(std=0.5)
        for head in (model.decoder.encoder_class_head, *model.decoder.decoder_class_head):
            head.weight.normal_(std=1.0)
            head.bias.zero_()
    image_processor = DetrImageProcessorPil(size={"height": image_size, "width": image_size}, do_pad=False)
    return _save(folder, model, OmDetTurboProcessor(image_processor=image_processor, tokenizer=tokenizer))


# model_type -> builder(folder, vocab, seed); vocab is the BERT vocab file or the CLIP vocab folder.
TINY_DETECTORS = {
    "mm-grounding-dino": build_tiny_mm_grounding_dino,
    "owlv2": build_tiny_owlv2,
    "omdet-turbo": build_tiny_omdet_turbo,
}


def assert_detections_match(found, boxes, scores, classes, phrases, box_atol: float = 1e-3,
                            score_atol: float = 1e-5) -> None:
    """Assert a Detector's ``sv.Detections`` equals expected (N, 4) XYXY boxes, (N,) scores, class ids and
    phrases, in order, within the tolerances (pixels, score units). For parity and caching/batching tests."""
    import numpy as np

    assert len(found) == len(boxes), f"{len(found)} detections, expected {len(boxes)}"
    np.testing.assert_allclose(found.xyxy, boxes, atol=box_atol)
    np.testing.assert_allclose(found.confidence, scores, atol=score_atol)
    np.testing.assert_array_equal(found.class_id, classes)
    assert found.data["phrase"].tolist() == list(phrases)


def assert_parity(detector, reference, image, ontology, **options) -> None:
    """``detector`` (encode + detect) equals ``reference(image, threshold)`` -> (boxes, scores, classes,
    phrases), a plain run of transformers' own calls, at a box threshold at the median of the reference's
    scores (so that boxes on both sides of it are tested). ``options``: further SegmentOptions fields."""
    import numpy as np

    from grounded.config import SegmentOptions

    threshold = float(np.median(reference(image, 0.0)[1]))
    expected = reference(image, threshold)
    assert len(expected[0]) > 0, "the reference found nothing: the comparison would be empty"
    options = SegmentOptions(box_threshold=threshold, **options)
    assert_detections_match(detector.detect(detector.encode([image]), ontology, options)[0], *expected)
