"""Batch invariance: what the models give an image never depends on the other images of its call.

A batched forward pass breaks that in two ways, both measured with the tiny models of tests/backends/ on a
CPU in float32 (transformers 5.25, torch 2.14):

- **Padding.** Grounding DINO's processors (and MM-Grounding-DINO's) resize each image to its own size, then
  pad the batch bottom-right to its largest image; the Swin backbone mixes those padded pixels into every
  window and convolution near them, so an image's boxes changed with the images beside it (`grounded label`
  on the 16 shared photos: all 16 records differed between ``--batch-size 1`` and 4).
- **Float rounding.** Batches of images of one size (nothing padded) still differ from single images in the
  last bits, enough to move a score across a threshold or a mask pixel across its logit: Grounding DINO's
  text-conditioned part (its first difference: the convolution making the extra feature level,
  ``input_proj_vision``; with oneDNN off, the fusion layer's matrix products), OmDet-Turbo's encoder (a
  convolution of its FPN, oneDNN) and OWLv2's ViT with 2 threads (the attention's output projection; equal
  with 1 thread). The kernels a library picks for a batch of B (oneDNN's convolutions, a matrix product split
  over threads) sum in another order than for a batch of 1. Some passes happened to be bit-identical (SAM's
  image encoder, Grounding DINO's Swin-T backbone at 800 x 1200), but nothing guarantees it.

So the Predictor gives each image its own forward passes (:func:`encode_each`, then detection, concept
segmentation and mask decoding on ``features.single(i)``): ``segment_batch``, ``grounded segment
--batch-size`` and both labelling engines (batched + prefetched, Ray) give every image exactly what a batch of
one gives (tested bit for bit on images of mixed sizes for every detector, segmenter and the concept
segmenter). A batch still shares one call, decoding ahead on a background thread and per-prompt caches (the
ontology's captions, SAM 3's text features). On a CPU that costs nothing: the models are compute-bound and
batching bought nothing there (README, "Batches"). On a GPU it gives up the batched passes' throughput;
libraries choose GPU kernels by batch shape too, so they would not give batch-invariant bits either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grounded.models.interfaces import Backend, Features


@dataclass
class EachImage(Features):
    """Features of B images, each encoded on its own (a batch of one), in the caller's order."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each image
    images: list[Features]  # image i's own features

    def single(self, index: int) -> Features:
        return self.images[index]


def encode_each(backend: Backend, images: Sequence[np.ndarray]) -> Features:
    """``backend.encode`` of each RGB uint8 image (H, W, 3) on its own; ``single(i)`` gives image i's features.

    One image: the backend's own features. Several: :class:`EachImage`.
    """
    if len(images) == 1:
        return backend.encode(images)
    return EachImage([tuple(image.shape[:2]) for image in images], [backend.encode([image]) for image in images])
