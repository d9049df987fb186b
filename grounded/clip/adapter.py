"""``TextPromptAdapter``: a CLIP text embedding -> k sparse prompt tokens in SAM's prompt-embedding space.

The SAM paper prompted the mask decoder with a CLIP text embedding as one more sparse token; that model was
never released. Here a small MLP maps an L2-normalised CLIP text embedding (N, clip_dim) to ``num_tokens``
tokens (N, k, sam_dim) that :func:`grounded.clip.decoding.decode_with_text` appends to the box tokens (or uses
alone). SAM and CLIP stay frozen; only the adapter is trained (:mod:`grounded.clip.train`).

On disk an adapter is ``NAME.safetensors`` (weights) + ``NAME.json``::

    {"format": "grounded-text-adapter/1", "config": AdapterConfig, "sam": identity, "clip": identity, ...}

where the identities (:mod:`grounded.clip.identity`) record the SAM and the CLIP it was trained for.
:meth:`TextPromptAdapter.check_models` refuses any other SAM or CLIP. ``load(path)`` takes a training
folder (``ADAPTER/adapter.*``), or either file.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from grounded.clip.config import AdapterConfig
from grounded.clip.identity import identity_mismatch
from grounded.errors import InputError, ModelLoadError
from grounded.formats.checkpoint import load_weights, read_checkpoint, save_checkpoint

FORMAT = "grounded-text-adapter/1"


class TextPromptAdapter(nn.Module):
    """(N, clip_dim) CLIP text embeddings -> (N, num_tokens, sam_dim) SAM sparse prompt tokens.

    ``tokens = token_base + MLP(sqrt(clip_dim) * normalise(e))``: the input is re-normalised (so raw or
    normalised CLIP features give the same tokens) and scaled to unit-variance entries; ``token_base`` is a
    learned per-token offset, so every output token starts at the scale of SAM's own point/box tokens.
    """

    def __init__(self, config: AdapterConfig, sam: dict[str, Any] | None = None,
                 clip: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.sam_identity = sam or {}  # the SAM it was trained for (grounded.clip.identity)
        self.clip_identity = clip or {}  # the CLIP it was trained for
        c = config
        self.mlp = nn.Sequential(nn.Linear(c.clip_dim, c.hidden_dim), nn.GELU(),
                                 nn.Linear(c.hidden_dim, c.hidden_dim), nn.GELU(),
                                 nn.Linear(c.hidden_dim, c.num_tokens * c.sam_dim))
        self.token_base = nn.Parameter(torch.randn(c.num_tokens, c.sam_dim))
        nn.init.normal_(self.mlp[-1].weight, std=0.02)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, clip_dim) -> (N, num_tokens, sam_dim)."""
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.config.clip_dim:
            raise InputError(f"text embeddings must be (N, {self.config.clip_dim}) for this adapter, "
                             f"got {tuple(text_embeddings.shape)}: was it trained with another CLIP?")
        x = nn.functional.normalize(text_embeddings.to(self.token_base), dim=-1) * math.sqrt(self.config.clip_dim)
        return self.token_base + self.mlp(x).view(-1, self.config.num_tokens, self.config.sam_dim)

    # ------------------------------------------------------------------------------------- model checks
    def check_models(self, sam: dict[str, Any] | None = None, clip: dict[str, Any] | None = None) -> None:
        """Refuse (InputError) a SAM or CLIP other than the ones recorded at training time."""
        for role, recorded, current, flag in (("SAM", self.sam_identity, sam, "--segmenter"),
                                              ("CLIP", self.clip_identity, clip, "--clip")):
            if current is None or not recorded:
                continue
            reason = identity_mismatch(recorded, current)
            if reason:
                raise InputError(
                    f"this text-prompt adapter was trained for {role} {recorded.get('name')!r}, but the {role} in use "
                    f"is {current.get('name')!r} ({reason}); pass {flag} {recorded.get('name')} (or a copy of it), "
                    f"or train an adapter for this {role} with `grounded train-adapter`")

    # ------------------------------------------------------------------------------------- files
    def record(self, **extra: Any) -> dict[str, Any]:
        return {"format": FORMAT, "config": asdict(self.config), "sam": self.sam_identity,
                "clip": self.clip_identity, **extra}

    def save(self, folder: str | Path, name: str = "adapter", **extra: Any) -> Path:
        """Write ``folder/name.safetensors`` + ``folder/name.json`` (``extra`` kept in the JSON); return the weights."""
        return save_checkpoint(self, folder, name, self.record(**extra))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TextPromptAdapter:
        """Load a saved adapter (eval mode): a training folder, or its ``.safetensors`` / ``.json`` file."""
        record, weights = read_adapter_record(path)
        try:
            adapter = cls(AdapterConfig(**record["config"]), record.get("sam"), record.get("clip"))
            load_weights(adapter, weights, "text-prompt adapter")
        except (TypeError, KeyError) as exc:
            raise ModelLoadError(f"cannot load the text-prompt adapter {weights}: {exc}") from None
        adapter.training_record = {k: v for k, v in record.items() if k not in {"format", "config", "sam", "clip"}}
        return adapter.to(device).eval()


def read_adapter_record(path: str | Path) -> tuple[dict[str, Any], Path]:
    """(the JSON record, the weights path) of an adapter folder or file."""
    return read_checkpoint(path, "adapter", (FORMAT,), "text-prompt adapter",
                           "the --out folder of `grounded train-adapter`")
