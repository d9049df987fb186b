"""Tiny checkpoints shaped like the published ones the README names: same config class and ``model_type``, same
processor files.

Two ways the hub's checkpoints differ from what ``save_pretrained`` writes here with transformers 5:

- **Video-typed models.** SAM 2.1, EdgeTAM and SAM 3 are published as video models (converted with
  ``Sam2VideoModel`` / ``EdgeTamVideoModel`` / ``Sam3VideoModel``): ``model_type`` ``sam2_video``,
  ``edgetam_video``, ``sam3_video``, weights for the image model plus the memory (SAM 3: detector + tracker).
  :func:`build_tiny_sam2_video`, :func:`build_tiny_edgetam_video` and :func:`build_tiny_sam3_video` build them
  from the image builders' tiny layouts (:mod:`grounded.testing.tiny_segmenters`) with a one-layer memory. By
  default they are sized for loading and image inference; ``tracking=True`` sizes them for video inference
  (grounded/video): SAM 2's memory splits object pointers into 64-wide pieces, which needs a model 128 wide
  (the image layouts are 32), a short memory window (3 memories, 4 object pointers; released: 7 and 16) so a
  few frames already reach past it, and objects that random weights report as visible (SAM 3: detection
  thresholds and a hotstart low enough to find and release objects within a few frames).
- **Processor files.** The hub's were written by transformers 4.x, one file per part:
  ``preprocessor_config.json`` (the image processor, ``image_processor_type`` as the converter named it, e.g.
  ``Sam2ImageProcessorFast``), ``video_preprocessor_config.json`` (the video processor) and
  ``processor_config.json`` (the processor's own settings), next to the tokenizer's files. transformers 5 writes
  one ``processor_config.json`` holding every part; :func:`published_layout` rewrites a folder the 4.x way.

``PUBLISHED`` lists every checkpoint the README names with what it publishes (``model_type``, image processor
type, processor class) and the builder of its tiny double; :func:`build_published` builds one. Video models
need ``grounded[backends]`` (torchvision processors; EdgeTAM: timm); SAM 3 needs CLIP's real vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from grounded.testing.tiny_segmenters import (
    _SAM2_DECODER,
    _SAM2_PROMPT,
    _edgetam_vision,
    _sam2_vision,
    _sam3_config,
    _sam3_image_processor,
    _save,
)

# A one-layer memory as narrow as the tiny image models allow (attention width 32; memory channels 64, as released).
_MEMORY = {"image_size": 128, "memory_attention_hidden_size": 32, "memory_attention_num_layers": 1,
           "memory_attention_rope_feat_sizes": [8, 8], "memory_encoder_hidden_size": 32,
           "memory_encoder_output_channels": 64, "mask_downsampler_embed_dim": 32, "memory_fuser_embed_dim": 32,
           "memory_fuser_intermediate_dim": 64, "memory_fuser_num_layers": 1}
_TRACKING_WIDTH = 128  # tracking=True: object pointers split into 64-wide pieces need a wider model


def _video_layout(tracking: bool) -> tuple[int, dict, dict, dict]:
    """(width, prompt encoder, mask decoder, memory) of the tiny video models; see the module docstring."""
    if not tracking:
        return 32, _SAM2_PROMPT, _SAM2_DECODER, _MEMORY
    width = _TRACKING_WIDTH
    memory = {**_MEMORY, "num_maskmem": 3, "max_object_pointers_in_encoder": 4,
              **{k: width for k in ("memory_attention_hidden_size", "memory_encoder_hidden_size",
                                    "mask_downsampler_embed_dim", "memory_fuser_embed_dim",
                                    "memory_fuser_intermediate_dim")}}
    return width, {**_SAM2_PROMPT, "hidden_size": width}, {**_SAM2_DECODER, "hidden_size": width}, memory


def _visible(model: torch.nn.Module, tracking: bool) -> torch.nn.Module:
    """With ``tracking``: bias the object score head so random weights report objects as visible (SAM 2 blanks
    the masks of objects it scores <= 0, which would leave nothing to follow after the first frame)."""
    if tracking:
        with torch.no_grad():
            model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(2.0)
    return model


@dataclass(frozen=True)
class Published:
    """What a hub checkpoint publishes, and the builder of a tiny double shaped like it."""

    model_type: str  # config.json's model_type
    builder: str  # a build_tiny_* function of grounded.testing (module:function)
    image_processor_type: str  # preprocessor_config.json's, as the checkpoint's converter wrote it
    processor_class: str  # the processor class the files name
    vocab: str | None = None  # "bert" or "clip": the builder takes that vocabulary


_GDINO = ("grounded.testing.tiny:build_tiny_detector", "GroundingDinoImageProcessor", "GroundingDinoProcessor", "bert")
_SAM = ("grounded.testing.tiny:build_tiny_segmenter", "SamImageProcessor", "SamProcessor")
_SAM_HQ = ("grounded.testing.tiny_segmenters:build_tiny_sam_hq", "SamImageProcessor", "SamHQProcessor")
_SAM2 = ("grounded.testing.tiny_published:build_tiny_sam2_video", "Sam2ImageProcessorFast", "Sam2VideoProcessor")

# Every checkpoint the README's models table names -> what it publishes (sources: see the README table).
PUBLISHED: dict[str, Published] = {
    "IDEA-Research/grounding-dino-tiny": Published("grounding-dino", *_GDINO),
    "IDEA-Research/grounding-dino-base": Published("grounding-dino", *_GDINO),
    "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det": Published(
        "mm-grounding-dino", "grounded.testing.tiny_detectors:build_tiny_mm_grounding_dino", *_GDINO[1:]),
    "google/owlv2-base-patch16-ensemble": Published(
        "owlv2", "grounded.testing.tiny_detectors:build_tiny_owlv2", "Owlv2ImageProcessor", "Owlv2Processor", "clip"),
    "google/owlv2-large-patch14-ensemble": Published(
        "owlv2", "grounded.testing.tiny_detectors:build_tiny_owlv2", "Owlv2ImageProcessor", "Owlv2Processor", "clip"),
    "omlab/omdet-turbo-swin-tiny-hf": Published(
        "omdet-turbo", "grounded.testing.tiny_detectors:build_tiny_omdet_turbo", "DetrImageProcessor",
        "OmDetTurboProcessor", "clip"),
    "facebook/sam-vit-base": Published("sam", *_SAM),
    "facebook/sam-vit-large": Published("sam", *_SAM),
    "facebook/sam-vit-huge": Published("sam", *_SAM),
    "Zigeng/SlimSAM-uniform-77": Published("sam", *_SAM),
    "syscv-community/sam-hq-vit-base": Published("sam_hq", *_SAM_HQ),
    "syscv-community/sam-hq-vit-large": Published("sam_hq", *_SAM_HQ),
    "syscv-community/sam-hq-vit-huge": Published("sam_hq", *_SAM_HQ),
    "facebook/sam2.1-hiera-tiny": Published("sam2_video", *_SAM2),
    "facebook/sam2.1-hiera-small": Published("sam2_video", *_SAM2),
    "facebook/sam2.1-hiera-base-plus": Published("sam2_video", *_SAM2),
    "facebook/sam2.1-hiera-large": Published("sam2_video", *_SAM2),
    "yonigozlan/EdgeTAM-hf": Published(
        "edgetam_video", "grounded.testing.tiny_published:build_tiny_edgetam_video", *_SAM2[1:]),
    "facebook/sam3": Published(
        "sam3_video", "grounded.testing.tiny_published:build_tiny_sam3_video", "Sam3ImageProcessorFast",
        "Sam3VideoProcessor", "clip"),
}


def published_layout(folder: str | Path, image_processor_type: str) -> Path:
    """Rewrite ``folder``'s ``processor_config.json`` (transformers 5: every part in one file) into transformers
    4.x's files, as on the hub: ``preprocessor_config.json`` (image processor, typed ``image_processor_type``),
    ``video_preprocessor_config.json`` (video processor, if any) and ``processor_config.json`` (the rest, if any
    besides the processor class). Tokenizer files are left as they are."""
    folder = Path(folder)
    path = folder / "processor_config.json"
    combined = json.loads(path.read_text(encoding="utf-8"))
    processor_class = combined["processor_class"]
    parts = {"image_processor": "preprocessor_config.json", "video_processor": "video_preprocessor_config.json"}
    for key, filename in parts.items():
        if key in combined:
            part = {**combined.pop(key), "processor_class": processor_class}
            if key == "image_processor":
                part["image_processor_type"] = image_processor_type
            (folder / filename).write_text(json.dumps(part, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if set(combined) - {"processor_class"}:
        path.write_text(json.dumps(combined, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    else:
        path.unlink()
    return folder


def build_published(name: str, folder: str | Path, vocab: str | Path | None = None, seed: int = 0) -> Path:
    """A tiny double of the README checkpoint ``name`` in ``folder``: its builder's model with the processor files
    laid out as published. ``vocab``: the BERT vocabulary file or CLIP vocabulary folder the builder reads."""
    import importlib

    spec = PUBLISHED[name]
    module, function = spec.builder.split(":")
    build = getattr(importlib.import_module(module), function)
    args = (vocab,) if spec.vocab else ()
    return published_layout(build(folder, *args, seed=seed), spec.image_processor_type)


def _sam2_video_processor(size: int = 128, normalize: dict | None = None):
    """``Sam2VideoProcessor``'s two parts for ``size``-px square inputs (``normalize``: image_mean / image_std)."""
    from transformers import Sam2ImageProcessor, Sam2VideoVideoProcessor

    square = {"height": size, "width": size}
    return (Sam2ImageProcessor(size=square, mask_size={"height": 32, "width": 32}),
            Sam2VideoVideoProcessor(size=square, **(normalize or {})))


def build_tiny_sam2_video(folder: str | Path, seed: int = 0, *, tracking: bool = False) -> Path:
    """Save a tiny ``Sam2VideoModel`` (``sam2_video``: the tiny SAM 2 image layout plus a one-layer memory) with
    its ``Sam2VideoProcessor`` to ``folder``, as facebook/sam2.1-hiera-* are published. ``tracking``: sized for
    video inference (see the module docstring)."""
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor

    width, prompt, decoder, memory = _video_layout(tracking)
    config = Sam2VideoConfig(vision_config=_sam2_vision(width), prompt_encoder_config=prompt,
                             mask_decoder_config=decoder, memory_attention_feed_forward_hidden_size=64, **memory)
    torch.manual_seed(seed)
    model = _visible(Sam2VideoModel(config), tracking)
    return _save(folder, model, Sam2VideoProcessor(*_sam2_video_processor()))


def build_tiny_edgetam_video(folder: str | Path, seed: int = 0, *, tracking: bool = False) -> Path:
    """Save a tiny ``EdgeTamVideoModel`` (``edgetam_video``: timm's ``test_convnext`` backbone, a one-layer memory
    and spatial perceiver) with its ``Sam2VideoProcessor`` to ``folder``, as yonigozlan/EdgeTAM-hf is published.
    ``tracking``: sized for video inference (see the module docstring)."""
    from transformers import EdgeTamVideoConfig, EdgeTamVideoModel, Sam2VideoProcessor

    width, prompt, decoder, memory = _video_layout(tracking)
    perceiver = 64 if tracking else 32  # tracking: as wide as the memory's features
    config = EdgeTamVideoConfig(
        vision_config=_edgetam_vision(width), prompt_encoder_config=prompt, mask_decoder_config=decoder,
        memory_attention_mlp_hidden_size=64, memory_attention_rope_k_sizes=[4, 4], perceiver_resampler_num_latents=16,
        perceiver_resampler_num_latents_2d=16, perceiver_resampler_hidden_size=perceiver,
        perceiver_resampler_mlp_intermediate_size=2 * perceiver,
        perceiver_resampler_attention_head_dim=64 if tracking else 16, perceiver_resampler_num_layers=1, **memory)
    torch.manual_seed(seed)
    model = _visible(EdgeTamVideoModel(config), tracking)
    return _save(folder, model, Sam2VideoProcessor(*_sam2_video_processor()))


def build_tiny_sam3_video(folder: str | Path, clip_vocab: str | Path, seed: int = 0, *, tracking: bool = False) -> Path:
    """Save a tiny ``Sam3VideoModel`` (``sam3_video``: the tiny SAM 3 as its detector, a SAM 2-style tracker with
    a one-layer memory) with its ``Sam3VideoProcessor`` and CLIP tokenizer to ``folder``, as facebook/sam3 is
    published. ``clip_vocab``: a folder with CLIP's ``vocab.json`` + ``merges.txt``. ``tracking``: sized for
    video inference (3 queries, at most 4 objects; see the module docstring)."""
    from transformers import Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor

    width, prompt, decoder, memory = _video_layout(tracking)
    detector, tokenizer = _sam3_config(clip_vocab, width, num_queries=3 if tracking else 10)
    tracker = {"vision_config": detector.vision_config.to_dict(), "mask_decoder_config": decoder,
               "prompt_encoder_config": {**prompt, "image_size": 112, "patch_size": 14},
               "memory_attention_feed_forward_hidden_size": 64, **memory, "image_size": 112}
    # tracking: thresholds low enough for random weights to find objects (SAM 3: 0.5 and 0.7), a 4-frame hotstart
    # (SAM 3: 15)
    found = {"score_threshold_detection": 0.2, "new_det_thresh": 0.2, "max_num_objects": 4, "hotstart_delay": 4,
             "hotstart_unmatch_thresh": 2, "hotstart_dup_thresh": 2} if tracking else {}
    config = Sam3VideoConfig(detector_config=detector.to_dict(), tracker_config=tracker, low_res_mask_size=32, **found)
    torch.manual_seed(seed)
    video = _sam2_video_processor(112, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3})[1]  # as the converter's
    processor = Sam3VideoProcessor(image_processor=_sam3_image_processor(), video_processor=video, tokenizer=tokenizer)
    return _save(folder, Sam3VideoModel(config), processor)
