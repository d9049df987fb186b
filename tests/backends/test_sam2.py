"""SAM 2 and EdgeTAM segmenter backends: parity with transformers' own Sam2Processor + model +
post_process_masks; tolerances in conftest_segmenters.py. EdgeTAM's tiny backbone is timm's test_convnext."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest_segmenters import (
    PARITY_CASES,
    check_batching,
    check_parity,
    check_through_predictor,
    load,
    two_images,
)

from grounded.errors import ModelLoadError

KINDS = {"sam2": ("build_tiny_sam2", "Sam2Segmenter", ("torchvision",)),
         "edgetam": ("build_tiny_edgetam", "EdgeTamSegmenter", ("torchvision", "timm"))}


@pytest.fixture(scope="module", params=sorted(KINDS))
def tiny_dir(request, tmp_path_factory) -> tuple[str, str]:
    """(model_type, folder) of a tiny checkpoint saved with save_pretrained."""
    builder, _, requires = KINDS[request.param]
    for module in requires:
        pytest.importorskip(module, reason=f"{request.param} needs {module} (the backends extra)")
    from grounded.testing import tiny_segmenters

    return request.param, str(getattr(tiny_segmenters, builder)(tmp_path_factory.mktemp(request.param)))


@pytest.fixture(scope="module")
def segmenter(tiny_dir):
    return load(tiny_dir[1], "segmenter")


def test_registry_picks_the_backend(tiny_dir, segmenter):
    kind, _ = tiny_dir
    assert type(segmenter).__name__ == KINDS[kind][1] and segmenter.model.config.model_type == kind
    assert "text_tokens" in segmenter.refused_options


@pytest.mark.parametrize("multimask, threshold", PARITY_CASES)
def test_parity_with_transformers(tiny_dir, segmenter, multimask, threshold):
    check_parity(segmenter, tiny_dir[1], two_images(1)[0], multimask, threshold)


def test_batching_and_chunking_change_nothing(segmenter):
    check_batching(segmenter, two_images(1))


def test_no_boxes(segmenter):
    features = segmenter.encode(two_images(1)[:1])
    logits, iou = segmenter.decode(features, 0, np.zeros((0, 4), dtype=np.float32), False)
    assert logits.shape[:2] == (0, 1) and iou.shape == (0, 1)
    assert segmenter.upscale(features, 0, logits[:, 0], 0.0).shape == (0, 60, 96)


def test_missing_extra_names_it(tiny_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, KINDS[tiny_dir[0]][2][-1], None)  # importing it now raises ImportError
    with pytest.raises(ModelLoadError, match=r'grounded\[backends\]'):
        load(tiny_dir[1], "segmenter")


def test_through_the_predictor(tiny_dir, tiny_model_dirs):
    check_through_predictor(str(tiny_model_dirs[0]), tiny_dir[1], two_images(1)[0])
