"""Tiny randomly initialised Grounding DINO and SAM, saved to folders and loaded like any checkpoint.

``build_tiny_models(folder)`` writes ``folder/detector`` and ``folder/segmenter`` with ``save_pretrained``
(config, safetensors weights, processor and tokenizer files), so tests, benchmarks' smoke runs and
examples load them through exactly the path a user's checkpoint takes (``Predictor(detector=folder/...)``).
Building both takes well under a second; outputs are random but deterministic for a given ``seed``.

Grounding DINO hard-codes BERT's special token ids (101 [CLS], 102 [SEP], 1012 ".", 1029 "?"), so its
tokenizer needs a vocabulary with those ids in place: the real bert-base-uncased vocabulary when
``vocab_file`` is given (``../shared/data/vocab/bert-base-uncased-vocab.txt``), else a small generated one
with the special ids at the right rows and a few hundred common words.
"""

from __future__ import annotations

from pathlib import Path

import torch

_WORDS = (
    "a an the of and on in with car cars wheel wheels tire tyre truck bus dog dogs cat person people bird bear "
    "bumper front back left right door window glass light headlight hood trunk mirror road street sign tree "
    "bottle can box shelf apple banana orange bag chair table handle mug cup plate photo red blue green small big"
).split()


def _write_vocab(path: Path) -> Path:
    """A WordPiece vocabulary whose special tokens sit at BERT's ids; other rows are filler."""
    rows = [f"[unused{i}]" for i in range(1100)]
    rows[0], rows[100], rows[101], rows[102], rows[103] = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    rows[1012], rows[1029], rows[1010] = ".", "?", ","
    rows.extend(w for w in _WORDS if w not in rows)
    rows.extend(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")
    rows.extend(c for c in "abcdefghijklmnopqrstuvwxyz0123456789" if c not in rows)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def bert_tokenizer(vocab_file: str | Path | None, scratch: Path):
    """BERT WordPiece tokenizer on ``vocab_file``, or on a generated vocabulary written into ``scratch``."""
    from transformers import BertTokenizer

    vocab = Path(vocab_file) if vocab_file else _write_vocab(Path(scratch) / "_vocab.txt")
    return BertTokenizer(vocab=str(vocab), do_lower_case=True)  # vocab=, not vocab_file= (see NOTES)


def build_tiny_detector(folder: str | Path, vocab_file: str | Path | None = None, seed: int = 0,
                        image_size: int = 128) -> Path:
    """Save a tiny Grounding DINO (Swin + BERT) with its processor to ``folder``; return the folder."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = bert_tokenizer(vocab_file, folder)
    backbone = SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                          out_features=["stage2", "stage3", "stage4"])
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=256)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, num_queries=20,
                                 encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2,
                                 decoder_n_points=2, max_text_len=32)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": image_size, "longest_edge": int(image_size * 5 / 3)})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    if not vocab_file:
        (folder / "_vocab.txt").unlink()
    return folder


def build_tiny_segmenter(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM (128-pixel input, 8x8 embedding) with its processor to ``folder``; return the folder."""
    from transformers import (
        SamConfig,
        SamImageProcessorPil,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                             output_channels=16, image_size=128, patch_size=16, window_size=4,
                             global_attn_indexes=[1], num_pos_feats=8)
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=128, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                   iou_head_hidden_dim=16)
    torch.manual_seed(seed)
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    image_processor = SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    SamProcessor(image_processor=image_processor).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_tiny_models(folder: str | Path, vocab_file: str | Path | None = None, seed: int = 0) -> tuple[Path, Path]:
    """Both tiny models under ``folder``: returns (``folder/detector``, ``folder/segmenter``)."""
    folder = Path(folder)
    return (build_tiny_detector(folder / "detector", vocab_file, seed),
            build_tiny_segmenter(folder / "segmenter", seed))
