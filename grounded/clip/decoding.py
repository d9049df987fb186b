"""SAM's mask decoder with extra sparse tokens: boxes + text, or text alone.

:func:`decode_tokens` does what ``SamModel.forward`` does after the image encoder (transformers 5.x), with
the model's public submodules, and appends ``extra_tokens`` to the sparse prompt embeddings::

    pos = model.get_image_wide_positional_embeddings().repeat(B, 1, 1, 1)
    sparse, dense = model.prompt_encoder(input_points=None, input_labels=None, input_boxes=boxes, input_masks=None)
    sparse = cat([sparse, extra_tokens], dim=2)          # (B, N, 2 + k, C); text alone: (B, N, k, C)
    masks, iou = model.mask_decoder(image_embeddings, pos, sparse, dense, multimask_output)

With no extra tokens the result equals ``SamModel(image_embeddings=..., input_boxes=...)`` (tested).

Shapes (one image, ``C`` = SAM's prompt hidden size, 256 for released SAMs; ``h, w`` = its embedding grid):

- ``embedding``: (1, C', h, w) image embedding from ``SamModel.get_image_embeddings``;
- ``boxes``: (N, 4) **XYXY in SAM's resized input frame** (:func:`grounded.models.backends.sam.boxes_to_sam_frame`
  maps pixel boxes of the original image there), or ``None``;
- ``extra_tokens``: (N, k, C), one set per box (or per text query when ``boxes`` is None);
- returns low-resolution mask logits (N, K, 4h, 4w) (256x256 for SAM ViT) and predicted IoU (N, K), with
  K = 3 when ``multimask`` else 1.

Gradients flow to ``extra_tokens`` (SAM's own parameters are meant to stay frozen), so the adapter trains
through this same function that inference uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from grounded.errors import InputError
from grounded.models.acceleration import autocast_context
from grounded.models.backends.sam import boxes_to_sam_frame


def decode_tokens(model: nn.Module, embedding: torch.Tensor, boxes: torch.Tensor | None,
                  extra_tokens: torch.Tensor | None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask decoder on one image with box tokens and/or extra tokens -> (N, K, 4h, 4w) logits, (N, K) IoU."""
    if boxes is None and extra_tokens is None:
        raise InputError("decode_tokens needs boxes, extra tokens or both")
    if embedding.ndim != 4 or embedding.shape[0] != 1:
        raise InputError(f"embedding must be one image's (1, C, h, w), got {tuple(embedding.shape)}")
    dtype = embedding.dtype
    if boxes is not None and extra_tokens is not None and len(boxes) != len(extra_tokens):
        raise InputError(f"{len(boxes)} boxes but {len(extra_tokens)} sets of extra tokens: give one set per box")
    pos = model.get_image_wide_positional_embeddings()  # (1, C, h, w)
    sparse, dense = model.prompt_encoder(
        input_points=None, input_labels=None,
        input_boxes=None if boxes is None else boxes.to(dtype)[None], input_masks=None,
    )
    if extra_tokens is not None:
        extra = extra_tokens.to(dense.dtype)[None]  # (1, N, k, C)
        sparse = extra if sparse is None else torch.cat([sparse, extra], dim=2)
    masks, iou = model.mask_decoder(
        image_embeddings=embedding, image_positional_embeddings=pos.to(dtype),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
    )
    return masks[0], iou[0]


def decode_with_text(segmenter, embedding: torch.Tensor, boxes_xyxy: np.ndarray | None,
                     original_hw: tuple[int, int], text_tokens: torch.Tensor,
                     multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`~grounded.models.backends.sam.SamSegmenter` form: pixel boxes of the original image (or None) +
    (N, k, C) text tokens -> float32 (N, K, 4h, 4w) logits and (N, K) predicted IoU (as ``SamSegmenter.decode``)."""
    boxes = None
    if boxes_xyxy is not None:
        frame = boxes_to_sam_frame(boxes_xyxy, original_hw, segmenter.longest_edge)
        boxes = torch.as_tensor(frame, dtype=segmenter.dtype, device=segmenter.device)
    tokens = text_tokens.to(segmenter.device)
    with autocast_context(segmenter.device, getattr(segmenter, "autocast", None)):  # as SamSegmenter.decode
        logits, iou = decode_tokens(segmenter.model, embedding.to(segmenter.device, segmenter.dtype), boxes, tokens,
                                    multimask)
    return logits.float(), iou.float()


def pick_best(logits: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, h, w), (N, K) -> the mask with the highest predicted IoU per row: (N, h, w), (N,)."""
    best = iou.argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    return logits[rows, best], iou[rows, best]
