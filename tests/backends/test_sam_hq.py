"""SAM-HQ segmenter backend: parity with transformers' own SamHQProcessor + SamHQModel + post_process_masks
(image encoder and HQ decoder in one call); tolerances in conftest_segmenters.py."""

from __future__ import annotations

import conftest_segmenters as shared
import pytest
import torch


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    from grounded.testing.tiny_segmenters import build_tiny_sam_hq

    return str(build_tiny_sam_hq(tmp_path_factory.mktemp("sam_hq")))


@pytest.fixture(scope="module")
def segmenter(tiny_dir):
    return shared.load(tiny_dir, "segmenter")


def test_registry_picks_the_backend(segmenter):
    assert type(segmenter).__name__ == "SamHQSegmenter" and segmenter.model.config.model_type == "sam_hq"
    assert "text_tokens" in segmenter.refused_options  # CLIP adapters are SAM's, not SAM-HQ's


@pytest.mark.parametrize("multimask, threshold", shared.PARITY_CASES)
def test_parity_with_transformers(tiny_dir, segmenter, multimask, threshold):
    shared.check_parity(segmenter, tiny_dir, shared.two_images(3)[0], multimask, threshold)


def test_the_hq_features_matter(segmenter):
    """Without the early ViT features the HQ decoder gives other masks: the backend must pass them on."""
    from grounded.models.backends.sam import boxes_to_sam_frame

    features = segmenter.encode(shared.two_images(3)[:1])
    assert features.intermediate.shape[:3] == (1, 8, 8)
    logits, _ = segmenter.decode(features, 0, shared.BOXES, False)
    boxes = torch.as_tensor(boxes_to_sam_frame(shared.BOXES, (60, 96), segmenter.longest_edge), dtype=torch.float32)
    with torch.no_grad():
        without = segmenter.model(image_embeddings=features.embeddings, input_boxes=boxes[None],
                                  multimask_output=False).pred_masks[0]
    assert without.shape == logits.shape and not torch.allclose(without, logits, atol=1e-4)


def test_batching_and_chunking_change_nothing(segmenter):
    shared.check_batching(segmenter, shared.two_images(3))


def test_through_the_predictor(tiny_dir, tiny_model_dirs):
    shared.check_through_predictor(str(tiny_model_dirs[0]), tiny_dir, shared.two_images(3)[0])
