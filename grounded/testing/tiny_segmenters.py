"""Tiny randomly initialised SAM-HQ, SAM 2, EdgeTAM and SAM 3, saved to folders like any checkpoint.

Each ``build_tiny_*(folder)`` writes a ``save_pretrained`` checkpoint (config.json with its ``model_type``,
safetensors weights, processor files) so that tests and smoke runs load it through the registry exactly
as a user's checkpoint is loaded. All use a 128-pixel input (SAM 3: 112 = 8 patches of 14) and build in
well under a second; outputs are random but deterministic for a given ``seed``.

- SAM-HQ: SAM's tiny layout (:func:`grounded.testing.tiny.build_tiny_segmenter`) plus the HQ decoder.
- SAM 2: Hiera with 4 stages of 1-2 blocks, FPN width 32, feature maps 32/16/8 px (strides 4/8/16).
- EdgeTAM: the same decoder on timm's ``test_convnext`` (207 k parameters, built offline with
  ``pretrained=False``; needs ``timm``).
- SAM 3's tracker (``Sam3TrackerModel``): SAM 3's tiny ViT + FPN below SAM 2's tiny prompt encoder / decoder.
- SAM 3: ViT of 2 blocks (width 32), CLIP text encoder of 1 layer, one DETR encoder/decoder layer, 10 queries.
  Its tokenizer must be CLIP's real BPE (``CLIPTokenizer.from_pretrained(folder)`` with ``vocab.json`` and
  ``merges.txt``): pass ``clip_vocab``.

SAM 2 / EdgeTAM / SAM 3 processors are torchvision classes: these builders need ``grounded[backends]``.
"""

from __future__ import annotations

from pathlib import Path

import torch

_SAM2_PROMPT = {"hidden_size": 32, "image_size": 128, "patch_size": 16, "mask_input_channels": 4}
_SAM2_DECODER = {"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 16}
_SAM2_FEATURE_SIZES = [[32, 32], [16, 16], [8, 8]]


def _save(folder: str | Path, model: torch.nn.Module, processor) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(folder)
    model.eval().save_pretrained(folder)
    return folder


def build_tiny_sam_hq(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM-HQ (128-pixel input, 8x8 embedding) with its processor to ``folder``."""
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor, SamImageProcessorPil

    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 64,
              "output_channels": 16, "image_size": 128, "patch_size": 16, "window_size": 4,
              "global_attn_indexes": [1], "num_pos_feats": 8,
              "initializer_range": 0.02}  # default 1e-10 leaves the ViT's features ~0: nothing for HQ to read
    prompt = {"hidden_size": 16, "image_size": 128, "patch_size": 16, "mask_input_channels": 4}
    decoder = {"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "iou_head_hidden_dim": 16, "vit_dim": 32}
    torch.manual_seed(seed)
    model = SamHQModel(SamHQConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder))
    image_processor = SamImageProcessorPil(size={"longest_edge": 128}, pad_size={"height": 128, "width": 128})
    return _save(folder, model, SamHQProcessor(image_processor=image_processor))


def _sam2_processor():
    from transformers import Sam2ImageProcessor, Sam2Processor

    image_processor = Sam2ImageProcessor(size={"height": 128, "width": 128}, mask_size={"height": 32, "width": 32})
    return Sam2Processor(image_processor=image_processor)


def build_tiny_sam2(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM 2 (Hiera backbone, 128-pixel input) with its processor to ``folder``."""
    from transformers import Sam2Config, Sam2Model

    torch.manual_seed(seed)
    model = Sam2Model(Sam2Config(vision_config=_sam2_vision(), prompt_encoder_config=_SAM2_PROMPT,
                                 mask_decoder_config=_SAM2_DECODER))
    return _save(folder, model, _sam2_processor())


def build_tiny_edgetam(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny EdgeTAM (timm ``test_convnext`` backbone, 128-pixel input) with its processor to ``folder``."""
    from transformers import EdgeTamConfig, EdgeTamModel

    torch.manual_seed(seed)
    model = EdgeTamModel(EdgeTamConfig(vision_config=_edgetam_vision(), prompt_encoder_config=_SAM2_PROMPT,
                                       mask_decoder_config=_SAM2_DECODER))
    return _save(folder, model, _sam2_processor())


_SAM3_VIT = {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "image_size": 112, "patch_size": 14, "window_size": 4,
             "global_attn_indexes": [1], "pretrain_image_size": 56}
_SAM3_VISION = {"backbone_config": _SAM3_VIT, "fpn_hidden_size": 32, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]]}


def _sam3_image_processor():
    from transformers import Sam3ImageProcessor

    return Sam3ImageProcessor(size={"height": 112, "width": 112}, mask_size={"height": 32, "width": 32})


def build_tiny_sam3_tracker(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM 3 tracker (112-pixel input; a ``sam3_tracker`` checkpoint) with its processor to ``folder``."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerProcessor

    vision = {"model_type": "sam3_vision_model", **_SAM3_VISION}
    prompt = {**_SAM2_PROMPT, "image_size": 112, "patch_size": 14}
    torch.manual_seed(seed)
    model = Sam3TrackerModel(Sam3TrackerConfig(vision_config=vision, prompt_encoder_config=prompt,
                                               mask_decoder_config=_SAM2_DECODER))
    return _save(folder, model, Sam3TrackerProcessor(image_processor=_sam3_image_processor()))


def build_tiny_sam3(folder: str | Path, clip_vocab: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM 3 (112-pixel input, 10 queries) with its processor and CLIP tokenizer to ``folder``.

    ``clip_vocab``: a folder with CLIP's ``vocab.json`` + ``merges.txt`` (the tokenizer SAM 3 ships).
    """
    from transformers import Sam3Model, Sam3Processor

    config, tokenizer = _sam3_config(clip_vocab)
    torch.manual_seed(seed)
    return _save(folder, Sam3Model(config), Sam3Processor(image_processor=_sam3_image_processor(), tokenizer=tokenizer))


def _sam2_vision(fpn_width: int = 32) -> dict:
    """SAM 2's tiny vision config: Hiera with 4 stages of 1-2 blocks, FPN ``fpn_width`` wide (shared with the
    video model)."""
    hiera = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
             "image_size": [128, 128], "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
             "num_attention_heads_per_stage": [1, 1, 2, 2], "window_size_per_stage": [4, 4, 4, 2],
             "global_attention_blocks": [3],  # not the first block of a stage (those pool with the window)
             "window_positional_embedding_background_size": [2, 2]}
    return {"backbone_config": hiera, "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": _SAM2_FEATURE_SIZES, "fpn_hidden_size": fpn_width}


def _edgetam_vision(fpn_width: int = 32) -> dict:
    """EdgeTAM's tiny vision config: timm's test_convnext, FPN ``fpn_width`` wide (shared with the video model)."""
    from transformers import TimmWrapperConfig

    # A config object, not a dict: TimmWrapperConfig.from_dict needs num_classes, which a dict would lack.
    backbone = TimmWrapperConfig(architecture="test_convnext", do_pooling=False, num_labels=0,
                                 model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
    # model_type named: EdgeTamVideoConfig would read a bare dict as SAM 2's vision config
    return {"model_type": "edgetam_vision_model", "backbone_config": backbone,
            "backbone_channel_list": [64, 48, 32, 24],  # timm's, deepest first
            "backbone_feature_sizes": _SAM2_FEATURE_SIZES, "fpn_hidden_size": fpn_width}


def _sam3_config(clip_vocab: str | Path, width: int = 32, num_queries: int = 10):
    """(tiny ``Sam3Config`` ``width`` wide, CLIP tokenizer on ``clip_vocab``): shared with the video model's detector."""
    from transformers import CLIPTokenizer, Sam3Config

    tokenizer = CLIPTokenizer.from_pretrained(str(clip_vocab))  # not CLIPTokenizer(vocab_file=...): see NOTES
    vision = {**_SAM3_VISION, "fpn_hidden_size": width}
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 32, "projection_dim": width}
    small = {"hidden_size": width, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": max(64, width)}
    config = Sam3Config(vision_config=vision, text_config=text, geometry_encoder_config=small,
                        detr_encoder_config=small, detr_decoder_config={**small, "num_queries": num_queries},
                        mask_decoder_config={"hidden_size": width, "num_attention_heads": 2})
    return config, tokenizer
