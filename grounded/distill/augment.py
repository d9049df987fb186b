"""Geometry shared by training and inference, and training augmentations.

Sizing. Training letterboxes every image to a ``size`` x ``size`` square: the long side is resized to
``size`` (aspect kept, bilinear for the image, nearest for the class map) and the rest is padded, image with
0 and target with ``IGNORE_INDEX`` (255, outside the loss). Inference (:func:`fit_to_stride`) resizes the
long side to ``size`` too but pads only to the next multiple of the student's stride, so non-square images
cost no more than they must.

Augmentations (:func:`augment`), in torch, on one sample with its own ``torch.Generator``; geometry is
applied identically to the image (3, S, S) and the target (S, S):

- horizontal flip (probability ``hflip``); classes whose names contain ``left``/``right`` are swapped with
  their mirror class when the dataset has it (``front_left_door`` <-> ``front_right_door``);
- multi-scale: zoom by a factor drawn from ``scale``, then crop (zoom in) or pad (zoom out) back to S x S;
  crops are class-balanced (``balanced_crops``): centred on a pixel of a class drawn among those present
  with probability ~ frequency ** -0.5, so rare parts are seen as often as they can be;
- small rotations (``rotate``, off by default): an angle drawn in [-rotate, rotate] degrees about the centre,
  image bilinear and maps nearest through one sampling grid (``torch.nn.functional.grid_sample``), corners
  that leave the picture padded (image 0, maps ``IGNORE_INDEX``);
- colour jitter on the image only: brightness, contrast, saturation;
- image degradations (off by default): Gaussian blur (probability ``blur``, sigma from ``blur_sigma`` pixels)
  and a JPEG round trip (probability ``jpeg``, quality from ``jpeg_quality``), both by Pillow on the uint8
  image, last (a camera blurs, then compresses).

An option that is off draws nothing from the generator, so the default's augmentations are the same with or
without the options' code.

The teacher's soft masks (:func:`augment_with_soft`, training with ``soft_weight``): class probability maps
(K, S, S) ride along as extra image channels through every geometric step (flip, with the left/right classes'
channels swapped as the class map's values are; zoom bilinear; crop, or pad with 0; rotation bilinear), so they
stay aligned with the image and the class map; they draw nothing from the generator, so the image and the
maps come out the same with or without them.

Determinism: :class:`~grounded.distill.cache.CachedSet` seeds each sample's generator from ``(seed, epoch,
index)``, so an epoch's augmentations do not depend on worker count, on order, or on whether training was
interrupted and resumed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.nn import functional as F

from grounded.distill.config import IGNORE_INDEX, AugmentConfig


def long_side_size(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) -> the (h, w) with max(h, w) == size, aspect kept, that :func:`resize_long_side` gives."""
    height, width = hw
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_long_side(image: np.ndarray, size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """Resize (H, W[, 3]) uint8 so that max(H, W) == size, aspect kept."""
    height, width = image.shape[:2]
    h, w = long_side_size((height, width), size)
    if (h, w) == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), resample))


def letterbox(image: np.ndarray, target: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 + target (H, W) uint8 -> (size, size, 3) and (size, size), top-left aligned."""
    img = resize_long_side(image, size)
    tgt = resize_long_side(target, size, Image.NEAREST)
    out_img = np.zeros((size, size, 3), dtype=np.uint8)
    out_tgt = np.full((size, size), IGNORE_INDEX, dtype=np.uint8)
    out_img[: img.shape[0], : img.shape[1]] = img
    out_tgt[: tgt.shape[0], : tgt.shape[1]] = tgt
    return out_img, out_tgt


def fit_to_stride(image: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Image (H, W, 3) uint8 -> float32 (1, 3, H', W') in [0, 1], H' and W' multiples of ``stride``.

    Returns the batch and the (h, w) of the resized image inside it (the rest is zero padding).
    """
    img = resize_long_side(image, size)
    h, w = img.shape[:2]
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
    out = np.zeros((1, 3, ph, pw), dtype=np.float32)
    out[0, :, :h, :w] = img.transpose(2, 0, 1).astype(np.float32) / 255.0
    return out, (h, w)


def flip_map(class_names: Sequence[str]) -> torch.Tensor:
    """(256,) long lookup: target value -> value after a horizontal flip (left/right classes swapped)."""
    lut = torch.arange(256)
    index = {name: k for k, name in enumerate(class_names)}
    for k, name in enumerate(class_names):
        for a, b in (("left", "right"), ("right", "left")):
            if a in name and name.replace(a, b) in index:
                lut[k + 1] = index[name.replace(a, b)] + 1
    return lut


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _crop_offset(g: torch.Generator, classes: torch.Tensor, new: int, size: int,
                 balance: torch.Tensor | None) -> tuple[int, int]:
    """Top-left corner of a ``size`` crop of a ``new`` x ``new`` map: random, or (``balance``: weights per class)
    centred on a random pixel of a class drawn among those present with probability proportional to its weight."""
    if balance is not None:
        present = torch.unique(classes)
        present = present[present < len(balance)]
        weights = balance[present] if len(present) else balance[:0]
        if len(weights) and float(weights.sum()) > 0:
            c = present[int(torch.multinomial(weights, 1, generator=g))]
            ys, xs = torch.nonzero(classes == c, as_tuple=True)
            k = int(torch.randint(0, len(ys), (), generator=g))
            clamp = lambda v: min(max(int(v) - size // 2, 0), new - size)  # noqa: E731
            return clamp(ys[k]), clamp(xs[k])
    return tuple(int(torch.randint(0, new - size + 1, (), generator=g)) for _ in range(2))  # type: ignore[return-value]


def rotate(image: torch.Tensor, maps: torch.Tensor, degrees: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate image (C, S, S) float and maps (M, S, S) long by ``degrees`` (counter-clockwise as displayed, as
    ``torch.rot90``) about the centre: image bilinear, maps nearest; uncovered corners: image 0, maps
    ``IGNORE_INDEX``."""
    size = image.shape[-1]
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    # output pixel (x, y) (normalised, y down) samples the input at R(-degrees) (x, y)
    theta = torch.tensor([[[cos, -sin, 0.0], [sin, cos, 0.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    image = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    # labels shifted by one so that the zero padding marks the uncovered pixels
    shifted = F.grid_sample((maps + 1).float()[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    maps = shifted.round().long() - 1
    return image, maps.masked_fill_(maps < 0, IGNORE_INDEX)


def degrade(image: torch.Tensor, sigma: float = 0.0, quality: int | None = None) -> torch.Tensor:
    """Image (3, H, W) float in [0, 1] -> the same after a Gaussian blur of ``sigma`` pixels (0: none) and a JPEG
    round trip at ``quality`` (None: none), both by Pillow on the uint8 image."""
    if not sigma and quality is None:
        return image
    array = (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    picture = Image.fromarray(array)
    if sigma:
        picture = picture.filter(ImageFilter.GaussianBlur(radius=sigma))
    if quality is not None:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(quality))
        picture = Image.open(buffer).convert("RGB")
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float().div_(255.0)


def augment(
    image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, lut: torch.Tensor,
    balance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment image (3, S, S) float in [0, 1] and target (S, S) or (M, S, S) long (the class map first, then
    maps that only move with it, such as instance boundaries); see the module docstring. ``balance``: per-class
    weights for class-balanced crops (with ``cfg.balanced_crops``)."""
    image, maps, _ = augment_with_soft(image, target, cfg, g, lut, balance)
    return image, maps


def augment_with_soft(
    image: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig, g: torch.Generator, lut: torch.Tensor,
    balance: torch.Tensor | None = None, soft: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`augment`, and the same geometry for ``soft`` (K, S, S) float class probability maps (channel k:
    class k; None: none), returned third (0 where padding uncovered the picture)."""
    size = image.shape[-1]
    maps = target if target.dim() == 3 else target[None]
    if soft is not None:  # extra channels of the image until the colour steps
        image = torch.cat([image, soft.to(image.dtype)])
    if float(torch.rand((), generator=g)) < cfg.hflip:
        image, maps = image.flip(-1), maps.flip(-1)
        maps = torch.cat([lut[maps[:1]], maps[1:]])
        if soft is not None:  # channel k takes the channel of the class k's pixels were before the flip
            image = torch.cat([image[:3], image[3:][lut[1 : len(soft) + 1] - 1]])
    scale = _uniform(g, *cfg.scale)
    new = max(1, round(size * scale))
    if new != size:
        image = F.interpolate(image[None], size=(new, new), mode="bilinear", align_corners=False)[0]
        maps = F.interpolate(maps[None].float(), size=(new, new), mode="nearest")[0].long()
        if new > size:
            y, x = _crop_offset(g, maps[0], new, size, balance if cfg.balanced_crops else None)
            image, maps = image[:, y : y + size, x : x + size], maps[:, y : y + size, x : x + size]
        else:
            y, x = (int(torch.randint(0, size - new + 1, (), generator=g)) for _ in range(2))
            canvas = image.new_zeros((len(image), size, size))
            canvas[:, y : y + new, x : x + new] = image
            labels = maps.new_full((len(maps), size, size), IGNORE_INDEX)
            labels[:, y : y + new, x : x + new] = maps
            image, maps = canvas, labels
    if cfg.rotate:
        image, maps = rotate(image, maps, _uniform(g, -cfg.rotate, cfg.rotate))
    if soft is not None:
        image, soft = image[:3], image[3:].contiguous()
    if cfg.brightness:
        image = image * _uniform(g, 1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast:
        mean = image.mean()
        image = (image - mean) * _uniform(g, 1 - cfg.contrast, 1 + cfg.contrast) + mean
    if cfg.saturation:
        gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
        image = (image - gray) * _uniform(g, 1 - cfg.saturation, 1 + cfg.saturation) + gray
    sigma = _uniform(g, *cfg.blur_sigma) if cfg.blur and float(torch.rand((), generator=g)) < cfg.blur else 0.0
    quality = (int(torch.randint(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1, (), generator=g))
               if cfg.jpeg and float(torch.rand((), generator=g)) < cfg.jpeg else None)
    image = degrade(image, sigma, quality)
    maps = maps if target.dim() == 3 else maps[0]
    return image.clamp(0.0, 1.0).contiguous(), maps.contiguous(), soft


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
