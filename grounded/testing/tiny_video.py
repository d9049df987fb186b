"""Tiny randomly initialised SAM 2 video, EdgeTAM video and SAM 3 video models, saved like any checkpoint.

Each ``build_tiny_*_video(folder)`` writes a ``save_pretrained`` checkpoint (config.json with its
``model_type``: ``sam2_video``, ``edgetam_video``, ``sam3_video``; safetensors weights; the video processor's
files) so that tests and smoke runs load it by path exactly as a user's checkpoint is loaded. They reuse the
image models' tiny layouts (:mod:`grounded.testing.tiny_segmenters`: 128-pixel input, SAM 3: 112) with a small
memory (attention width 32, one layer) and build in well under a second; outputs are random but deterministic
for a given ``seed``. All need ``grounded[backends]`` (torchvision processors; EdgeTAM: timm).
"""

from __future__ import annotations

from pathlib import Path

import torch

from grounded.testing.tiny_segmenters import _SAM2_DECODER, _SAM2_FEATURE_SIZES, _SAM2_PROMPT, _save

_HIERA = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
          "image_size": [128, 128], "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
          "num_attention_heads_per_stage": [1, 1, 2, 2], "window_size_per_stage": [4, 4, 4, 2],
          "global_attention_blocks": [3], "window_positional_embedding_background_size": [2, 2]}
# The memory's features are 64 wide (its cross-attention hard-codes 64) and object pointers are split into
# memory-width pieces (which needs a wider model), so the FPN, prompt encoder and mask decoder are 128 wide.
_WIDTH = 128
_PROMPT = {**_SAM2_PROMPT, "hidden_size": _WIDTH}
_DECODER = {**_SAM2_DECODER, "hidden_size": _WIDTH}
_MEMORY = {  # memory attention / encoder / fuser: one layer each; 3 memories and 4 object pointers (the released
    # checkpoints: 7 and 16), so a clip of a few frames already reaches past the memory window
    "num_maskmem": 3, "max_object_pointers_in_encoder": 4, "image_size": 128, "memory_attention_hidden_size": _WIDTH, "memory_attention_num_layers": 1,
    "memory_attention_rope_feat_sizes": [8, 8], "memory_encoder_hidden_size": _WIDTH,
    "memory_encoder_output_channels": 64, "mask_downsampler_embed_dim": _WIDTH, "memory_fuser_embed_dim": _WIDTH,
    "memory_fuser_intermediate_dim": 128, "memory_fuser_num_layers": 1}


def _visible(model: torch.nn.Module, mask_decoder: torch.nn.Module) -> torch.nn.Module:
    """Bias the object score head so random weights report objects as visible (SAM 2 blanks the masks of objects
    it scores <= 0, which would leave nothing to compare after the first frame)."""
    with torch.no_grad():
        mask_decoder.pred_obj_score_head.proj_out.bias.fill_(2.0)
    return model


def _sam2_video_processor(image_size: int = 128):
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": image_size, "width": image_size}
    return Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size, mask_size={"height": 32, "width": 32}),
                              video_processor=Sam2VideoVideoProcessor(size=size))


def build_tiny_sam2_video(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM 2 video model (Hiera backbone, 128-pixel input, a one-layer memory) to ``folder``."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    vision = {"backbone_config": _HIERA, "backbone_channel_list": [64, 32, 16, 8],
              "backbone_feature_sizes": _SAM2_FEATURE_SIZES, "fpn_hidden_size": _WIDTH}
    config = Sam2VideoConfig(vision_config=vision, prompt_encoder_config=_PROMPT,
                             mask_decoder_config=_DECODER, memory_attention_feed_forward_hidden_size=64, **_MEMORY)
    torch.manual_seed(seed)
    model = Sam2VideoModel(config)
    return _save(folder, _visible(model, model.mask_decoder), _sam2_video_processor())


def build_tiny_edgetam_video(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny EdgeTAM video model (timm ``test_convnext`` backbone, 128-pixel input) to ``folder``."""
    from transformers import EdgeTamVideoConfig, EdgeTamVideoModel, TimmWrapperConfig

    backbone = TimmWrapperConfig(architecture="test_convnext", do_pooling=False, num_labels=0,
                                 model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
    vision = {"model_type": "edgetam_vision_model", "backbone_config": backbone, "backbone_channel_list": [64, 48, 32, 24],
              "backbone_feature_sizes": _SAM2_FEATURE_SIZES, "fpn_hidden_size": _WIDTH}
    config = EdgeTamVideoConfig(vision_config=vision, prompt_encoder_config=_PROMPT,
                                mask_decoder_config=_DECODER, memory_attention_mlp_hidden_size=64,
                                memory_attention_rope_k_sizes=[4, 4], perceiver_resampler_num_latents=16,
                                perceiver_resampler_num_latents_2d=16, perceiver_resampler_hidden_size=64,
                                perceiver_resampler_mlp_intermediate_size=128, perceiver_resampler_attention_head_dim=64,
                                perceiver_resampler_num_layers=1, **_MEMORY)
    torch.manual_seed(seed)
    model = EdgeTamVideoModel(config)
    return _save(folder, _visible(model, model.mask_decoder), _sam2_video_processor())


def build_tiny_sam3_video(folder: str | Path, clip_vocab: str | Path, seed: int = 0) -> Path:
    """Save a tiny SAM 3 video model (112-pixel input, 3 queries, at most 4 objects, a one-layer tracker memory) to ``folder``.

    ``clip_vocab``: a folder with CLIP's ``vocab.json`` + ``merges.txt`` (the tokenizer SAM 3 ships).
    """
    from transformers import (
        CLIPTokenizer,
        Sam2VideoVideoProcessor,
        Sam3ImageProcessor,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )

    tokenizer = CLIPTokenizer.from_pretrained(str(clip_vocab))  # not CLIPTokenizer(vocab_file=...): see NOTES
    vit = {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "image_size": 112, "patch_size": 14, "window_size": 4,
           "global_attn_indexes": [1], "pretrain_image_size": 56}
    vision = {"backbone_config": vit, "fpn_hidden_size": _WIDTH, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]]}
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 32, "projection_dim": _WIDTH}
    small = {"hidden_size": _WIDTH, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 128}
    detector = {"vision_config": vision, "text_config": text, "geometry_encoder_config": small,
                "detr_encoder_config": small, "detr_decoder_config": {**small, "num_queries": 3},
                "mask_decoder_config": {"hidden_size": _WIDTH, "num_attention_heads": 2}}
    tracker = {"vision_config": vision, "prompt_encoder_config": {**_PROMPT, "image_size": 112, "patch_size": 14},
               "mask_decoder_config": _DECODER, "memory_attention_feed_forward_hidden_size": 64,
               **{**_MEMORY, "image_size": 112}}
    # thresholds low enough for random weights to find objects (SAM 3: 0.5 and 0.7); a 4-frame hotstart (SAM 3: 15)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=32,
                             score_threshold_detection=0.2, new_det_thresh=0.2, max_num_objects=4,
                             hotstart_delay=4, hotstart_unmatch_thresh=2, hotstart_dup_thresh=2)
    torch.manual_seed(seed)
    model = Sam3VideoModel(config)
    size = {"height": 112, "width": 112}
    processor = Sam3VideoProcessor(image_processor=Sam3ImageProcessor(size=size, mask_size={"height": 32, "width": 32}),
                                   video_processor=Sam2VideoVideoProcessor(size=size), tokenizer=tokenizer)
    return _save(folder, model, processor)
