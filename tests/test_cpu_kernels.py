"""CPU rewrites that keep the maths: the gather deformable attention and glibc memory retention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

from grounded.errors import InputError
from grounded.models import acceleration as acc
from grounded.models.acceleration import Acceleration
from grounded.models.deformable import (
    GatherDeformableAttention,
    deformable_attention_gather,
    use_gather_deformable_attention,
)
from grounded.ontology import Ontology
from grounded.pipeline.predictor import Predictor

CASES = [  # (batch, heads, channels, level shapes, queries, points)
    (1, 8, 32, [(20, 30), (10, 15), (5, 8), (3, 4)], 900, 4),
    (2, 4, 16, [(7, 9), (4, 5)], 63 + 20, 2),
    (3, 1, 8, [(1, 1)], 5, 1),
]


def _inputs(batch, heads, channels, shapes, queries, points, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in shapes)
    value = torch.randn(batch, s, heads, channels, generator=g)
    # locations spill over the map's edges on purpose: outside pixels count as zeros (grid_sample's padding)
    loc = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=g) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=g)
    return value, shapes, loc, weights


def _reference(value, shapes, loc, weights):
    spatial = torch.tensor(shapes)
    starts = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    return MultiScaleDeformableAttention()(value, spatial, shapes, starts, loc, weights, 64)


@pytest.mark.parametrize("case", CASES)
def test_gather_equals_transformers_grid_sample(case):
    value, shapes, loc, weights = _inputs(*case)
    ref = _reference(value, shapes, loc, weights)
    got = deformable_attention_gather(value, shapes, loc, weights)
    assert got.shape == ref.shape == (case[0], case[4], case[1] * case[2])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_gather_under_bfloat16_autocast_stays_in_range():
    value, shapes, loc, weights = _inputs(*CASES[0])
    ref = _reference(value, shapes, loc, weights)
    got = deformable_attention_gather(value.bfloat16(), shapes, loc.bfloat16(), weights.bfloat16())
    assert got.dtype == torch.bfloat16
    assert (got.float() - ref).abs().max() < 0.05 * ref.abs().max()  # bf16 value rounding, indices exact


def test_gather_refuses_mismatched_shapes():
    value, shapes, loc, weights = _inputs(*CASES[1])
    with pytest.raises(ValueError, match="spatial_shapes"):
        deformable_attention_gather(value, shapes[:1], loc, weights)


@pytest.fixture(scope="module")
def folders(tiny_model_dirs):
    return tiny_model_dirs


def _detect(folders, image, **options):
    predictor = Predictor(*map(str, folders), device="cpu", box_threshold=0.0, text_threshold=0.0, **options)
    encoding = predictor.encode([image])
    caption = predictor.detector.captions_for(Ontology.from_prompt(["car", "wheel"]))[0]
    return predictor, predictor.detector.score_captions(encoding.detector, [caption.input_ids], [0])


def test_cpu_predictor_uses_the_gather_and_agrees(folders):
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    fast, (probs, boxes) = _detect(folders, image)
    slow, (ref_probs, ref_boxes) = _detect(folders, image, cpu_kernels=False)
    kinds = lambda p: {type(m).__name__ for m in p.detector.model.modules()}  # noqa: E731
    assert "GatherDeformableAttention" in kinds(fast) and "MultiScaleDeformableAttention" not in kinds(fast)
    assert "MultiScaleDeformableAttention" in kinds(slow) and "GatherDeformableAttention" not in kinds(slow)
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probs, ref_probs, atol=1e-4, rtol=1e-4)
    assert "acceleration" not in fast.describe() and "acceleration" not in slow.describe()  # same results


def test_replacement_counts_every_core():
    block = torch.nn.ModuleDict({"a": MultiScaleDeformableAttention(),
                                 "b": torch.nn.Sequential(MultiScaleDeformableAttention())})
    assert use_gather_deformable_attention(block) == 2
    assert isinstance(block["a"], GatherDeformableAttention) and isinstance(block["b"][0], GatherDeformableAttention)
    assert use_gather_deformable_attention(block) == 0


def test_retain_freed_memory_is_idempotent_and_reported(monkeypatch):
    first = acc.retain_freed_memory()
    assert isinstance(first, bool) and acc.retain_freed_memory() == first
    monkeypatch.setattr(acc, "_retained", False)
    monkeypatch.setattr(acc.ctypes, "CDLL", lambda _name: object())  # a C library without glibc's symbols
    assert acc.retain_freed_memory() is False


@pytest.mark.parametrize("field", ["retain_memory", "cpu_kernels"])
def test_switches_must_be_booleans(field):
    assert getattr(Acceleration(**{field: False}), field) is False
    with pytest.raises(InputError, match=field):
        Acceleration(**{field: "yes"})
