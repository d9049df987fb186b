"""Model identities: which SAM and which CLIP an adapter was trained for, robust to moves and dtype casts.

An identity is ``{"name": str, "arch": sha256 of the architecture config, "probe": {param: [16 floats]}}``.
Two models are the same when their architecture hashes are equal and their probes (16 values sampled at
fixed positions from six parameters spread over the network) agree to 2 % (so a bfloat16 copy of the same
weights matches, a different checkpoint does not). The name is informative only: a checkpoint copied to
another folder is still the same model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from torch import nn

PROBE_TENSORS = 6  # parameters sampled, evenly spaced over the sorted parameter names
PROBE_VALUES = 16  # values sampled per parameter, evenly spaced over its flattened elements
RTOL, ATOL = 0.02, 1e-3  # bfloat16 keeps ~3 significant digits


def config_hash(config: Any) -> str:
    """sha256 of a JSON-able architecture description (a dict or an object with ``to_dict()``)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    drop = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures", "_attn_implementation",
            "_attn_implementation_autoset", "output_hidden_states", "output_attentions", "return_dict"}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in sorted(value.items()) if k not in drop}
        return value

    return hashlib.sha256(json.dumps(clean(data), sort_keys=True, default=str).encode()).hexdigest()[:16]


def weight_probe(module: nn.Module) -> dict[str, list[float]]:
    """A few values of a few parameters (see the module docstring), as float lists."""
    params = sorted((name, p) for name, p in module.named_parameters() if p.numel() > 0)
    if not params:
        return {}
    picks = np.unique(np.linspace(0, len(params) - 1, PROBE_TENSORS).round().astype(int))
    probe = {}
    for i in picks:
        name, p = params[i]
        flat = p.detach().reshape(-1)
        idx = np.unique(np.linspace(0, flat.numel() - 1, PROBE_VALUES).round().astype(int))
        probe[name] = [float(v) for v in flat[idx].float().cpu()]
    return probe


def model_identity(name: str, module: nn.Module, config: Any, **extra: Any) -> dict[str, Any]:
    return {"name": str(name), "arch": config_hash(config), "probe": weight_probe(module), **extra}


def identity_mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """``None`` when both identities are the same model, else a short reason."""
    if recorded.get("arch") != current.get("arch"):
        return "different architecture"
    a, b = recorded.get("probe", {}), current.get("probe", {})
    if set(a) != set(b):
        return "different parameters"
    for name in a:
        if len(a[name]) != len(b[name]) or not np.allclose(a[name], b[name], rtol=RTOL, atol=ATOL):
            return f"different weights (parameter {name})"
    return None
