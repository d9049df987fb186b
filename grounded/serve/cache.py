"""The server's image encodings, kept by image (sha256 of its bytes) within a bound in bytes, least recently used out.

One :class:`EncodingCache` serves ``POST /v1/segment`` (another prompt on an image asked about before runs no image
encoder) and the clicks of ``POST /v1/segment/points`` (each click runs only the prompt encoder and mask decoder).
An entry (:class:`CachedImage`) holds the decoded image, the predictor's ``ImageEncoding`` (all roles), the click
segmenter's own features where it is not the predictor's segmenter (SAM 3's tracker) and the low-resolution
logits of the latest click answers (``mask_id`` -> (h, w)), the prior of the next click on that object.

Sizes are counted from the arrays and tensors an entry holds (:func:`nbytes`, each counted once); an entry larger
than the whole bound is used for its request and not kept. The cache is used under the engine's lock (one model
request at a time), so it takes no lock of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DEFAULT_CACHE_BYTES = 1 << 30  # 1 GiB: ~40 SAM ViT-B + Grounding DINO encodings of 1-megapixel photos
MASKS_PER_IMAGE = 32  # click answers kept per image (their low-res logits: 256 kB each for SAM)


def image_key(data: bytes) -> str:
    """The id of an image: sha256 of its bytes (hex), as ``POST /v1/segment`` and ``/v1/segment/points`` answer it."""
    return hashlib.sha256(data).hexdigest()


def nbytes(value: Any, seen: set[int] | None = None) -> int:
    """Bytes held by the arrays and tensors inside ``value`` (dataclasses, lists, tuples, dicts), each once."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(nbytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v, seen) for v in value)
    return 0


@dataclass
class CachedImage:
    """What the server keeps of one image."""

    image: np.ndarray  # RGB uint8 (H, W, 3)
    encoding: Any = None  # the predictor's ImageEncoding (grounded.pipeline.predictor), all roles
    clicks: Any = None  # the click segmenter's features when it is not the predictor's segmenter
    masks: OrderedDict[str, torch.Tensor] = field(default_factory=OrderedDict)  # mask_id -> low-res logits (h, w)

    def keep_mask(self, mask_id: str, logits: torch.Tensor) -> None:
        self.masks[mask_id] = logits
        while len(self.masks) > MASKS_PER_IMAGE:
            self.masks.popitem(last=False)


class EncodingCache:
    """image id -> :class:`CachedImage`, at most ``max_bytes`` in all (least recently used out)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[CachedImage, int]] = OrderedDict()
        self.hits = self.misses = self.evicted = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def get(self, key: str) -> CachedImage | None:
        """The entry of ``key`` (now the most recently used), or None; counted as a hit or a miss."""
        hit = self._entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: str, entry: CachedImage) -> bool:
        """Keep (or re-measure) ``entry``; evict the least recently used until the bound holds. False when the
        entry alone is larger than the bound (then it is not kept)."""
        self._entries.pop(key, None)
        size = nbytes(entry)
        if size > self.max_bytes:
            return False
        self._entries[key] = (entry, size)
        while self.bytes > self.max_bytes:
            self._entries.popitem(last=False)
            self.evicted += 1
        return True

    def report(self) -> dict[str, int]:
        """For ``/v1/health``: images kept, bytes used and allowed, hits, misses, evictions."""
        return {"images": len(self), "bytes": self.bytes, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses, "evicted": self.evicted}
