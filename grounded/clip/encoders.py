"""CLIP text and image encoders behind one small interface.

::

    clip = load_clip("openai/clip-vit-base-patch32")         # transformers CLIPModel: a name or a local folder
    clip = load_clip("open_clip:ViT-B-32@laion2b_s34b_b79k")  # open_clip_torch (extra `openclip`): ARCH[@PRETRAINED]
    t = clip.encode_texts(["a wheel", "a car"])               # (2, D) float32, L2-normalised, cached per string
    v = clip.encode_images([crop_a, crop_b])                  # RGB uint8 (h, w, 3) crops -> (2, D), L2-normalised
    probs = (clip.logit_scale * v @ t.T).softmax(-1)          # CLIP's zero-shot classification

Embeddings come back on the CPU as float32 whatever device and dtype the model runs in. ``identity()``
records which model this is (name, architecture hash, weight probe; see :mod:`grounded.clip.identity`), so a
text-prompt adapter can refuse a CLIP it was not trained with.

Backends:

- ``TransformersClip`` (default): any ``CLIPModel`` checkpoint, loaded with
  :func:`grounded.models.loading.load_pretrained` (offline machines get an error saying how to get the
  weights); the processor's PIL image path is used, so no torchvision is needed.
- ``OpenClipEncoder``: ``open_clip_torch`` models, imported only when asked for. open_clip imports
  torchvision at import time; where it cannot be imported the error names the ``openclip`` extra.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from grounded.clip.identity import model_identity
from grounded.errors import InputError, ModelLoadError
from grounded.models.loading import load_pretrained, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # or any CLIPModel name / folder, or "open_clip:ARCH[@PRETRAINED]"
OPEN_CLIP_PREFIX = "open_clip:"
OPEN_CLIP_HINT = ("install the `openclip` extra: pip install 'grounded[openclip]' (on CPU-only machines with no "
                  "usable torchvision: pip install --no-deps open_clip_torch ftfy, which then needs torchvision "
                  "to import), or use a transformers CLIP such as --clip openai/clip-vit-base-patch32")


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu()


class ClipEncoder:
    """Shared part of the backends: text cache, batching, normalisation. Subclasses implement ``_texts`` and
    ``_images`` (unnormalised features of a batch) and set ``model``, ``name``, ``dim`` and ``logit_scale``."""

    backend = "base"
    model: nn.Module
    name: str
    dim: int
    logit_scale: float

    def __init__(self) -> None:
        self._cache: dict[str, torch.Tensor] = {}

    def _texts(self, texts: list[str]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _images(self, crops: list[np.ndarray]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _arch(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Texts -> (N, D) float32 CPU, L2-normalised. Each distinct string is encoded once per encoder."""
        if isinstance(texts, str) or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InputError(f"CLIP texts must be a list of non-empty strings, got {texts!r}")
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            self._cache.update(zip(chunk, _normalise(self._texts(chunk)), strict=True))
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[t] for t in texts])

    @torch.inference_mode()
    def encode_images(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> torch.Tensor:
        """RGB uint8 crops (h, w, 3) of any sizes -> (N, D) float32 CPU, L2-normalised."""
        for i, crop in enumerate(crops):
            if not isinstance(crop, np.ndarray) or crop.ndim != 3 or crop.shape[2] != 3 or min(crop.shape[:2]) < 1:
                raise InputError(f"crop {i} must be an RGB uint8 array (h, w, 3) with h, w >= 1, "
                                 f"got {getattr(crop, 'shape', type(crop))}")
        parts = [_normalise(self._images(list(crops[s : s + batch_size]))) for s in range(0, len(crops), batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.dim)

    def identity(self) -> dict[str, Any]:
        """Which CLIP this is (see :mod:`grounded.clip.identity`), plus its backend and embedding size."""
        return model_identity(self.name, self.model, self._arch(), backend=self.backend, dim=self.dim)


def _pooled(out: Any) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose ``pooler_output`` is the projected feature; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersClip(ClipEncoder):
    """A transformers ``CLIPModel`` and its ``CLIPProcessor``."""

    backend = "transformers"

    def __init__(self, model: nn.Module, processor: Any, name: str = "") -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name
        self.dim = int(model.config.projection_dim)
        self.logit_scale = float(model.logit_scale.exp())
        self.max_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_CLIP, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, local_files_only: bool = False) -> TransformersClip:
        from transformers import CLIPModel, CLIPProcessor

        processor = load_pretrained(CLIPProcessor, name, "clip", local_files_only=local_files_only)
        model = load_pretrained(CLIPModel, name, "clip", local_files_only=local_files_only)
        return cls(model.to(device=resolve_device(device), dtype=resolve_dtype(dtype)), processor, name)

    def _texts(self, texts: list[str]) -> torch.Tensor:
        enc = self.processor.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                       return_tensors="pt").to(self.device)
        return _pooled(self.model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]))

    def _images(self, crops: list[np.ndarray]) -> torch.Tensor:
        pixels = self.processor.image_processor(images=crops, return_tensors="pt")["pixel_values"]
        dtype = next(self.model.parameters()).dtype
        return _pooled(self.model.get_image_features(pixel_values=pixels.to(self.device, dtype)))

    def _arch(self) -> Any:
        return self.model.config


def import_open_clip() -> Any:
    """``import open_clip``, or a :class:`ModelLoadError` naming the extra to install."""
    try:
        import open_clip
    except Exception as exc:  # ImportError, or torchvision failing to load its extension (RuntimeError)
        raise ModelLoadError(f"the open_clip CLIP backend cannot be imported ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); {OPEN_CLIP_HINT}") from exc
    return open_clip


class OpenClipEncoder(ClipEncoder):
    """An ``open_clip`` model with its tokenizer and image transform (``spec`` = ``ARCH[@PRETRAINED]``)."""

    backend = "open_clip"

    def __init__(self, model: nn.Module, tokenizer: Any, preprocess: Any, name: str, arch: dict[str, Any]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.preprocess, self.name, self._arch_dict = tokenizer, preprocess, name, arch
        self.dim = int(self._texts(["a"]).shape[-1])
        self.logit_scale = float(model.logit_scale.exp())

    @classmethod
    def from_name(cls, spec: str, device: str | torch.device | None = None) -> OpenClipEncoder:
        open_clip = import_open_clip()
        arch, _, pretrained = spec.partition("@")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None)
            tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # unknown architecture, weights not downloadable offline, ...
            raise ModelLoadError(f"open_clip model {spec!r} could not be built ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass ARCH[@PRETRAINED] "
                                 f"from open_clip.list_pretrained(), or a local weights file as PRETRAINED") from exc
        if not pretrained:
            logger.warning("open_clip model %s has random weights (no @PRETRAINED given)", arch)
        model = model.to(resolve_device(device))
        return cls(model, tokenizer, preprocess, OPEN_CLIP_PREFIX + spec, {"arch": arch, "pretrained": pretrained})

    def _texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _images(self, crops: list[np.ndarray]) -> torch.Tensor:
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(c))) for c in crops])
        return self.model.encode_image(pixels.to(self.device))

    def _arch(self) -> Any:
        return self._arch_dict


def load_clip(spec: str | ClipEncoder | None = None, device: str | torch.device | None = None,
              dtype: str | torch.dtype | None = None, local_files_only: bool = False) -> ClipEncoder:
    """A CLIP encoder from a name, a folder, ``"open_clip:ARCH[@PRETRAINED]"``, or an encoder (returned as is)."""
    if isinstance(spec, ClipEncoder):
        return spec
    spec = DEFAULT_CLIP if spec is None else spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"clip must be a CLIPModel name or folder, 'open_clip:ARCH[@PRETRAINED]' or a ClipEncoder, "
                         f"got {spec!r}")
    if spec.startswith(OPEN_CLIP_PREFIX):
        return OpenClipEncoder.from_name(spec[len(OPEN_CLIP_PREFIX):], device)
    return TransformersClip.from_pretrained(spec, device, dtype, local_files_only)
