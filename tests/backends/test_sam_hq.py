"""SAM-HQ segmenter backend: parity with transformers' own SamHQProcessor + SamHQModel + post_process_masks.

The reference, per image: ``SamHQProcessor(images=image, input_boxes=[boxes])`` + ``SamHQModel(**inputs,
multimask_output=...)`` (image encoder and HQ decoder in one call) + ``processor.post_process_masks``.
Tolerances: logits and predicted IoU 1e-5 (features computed once and reused vs recomputed), masks equal on
all but 0.1% of pixels (a logit within float rounding of the threshold may flip).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

BOXES = np.array([[5, 8, 60, 70], [0, 0, 95, 59], [30.5, 10.25, 90, 50]], dtype=np.float32)  # XYXY pixels


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    from grounded.testing.tiny_segmenters import build_tiny_sam_hq

    return str(build_tiny_sam_hq(tmp_path_factory.mktemp("sam_hq")))


@pytest.fixture(scope="module")
def segmenter(tiny_dir):
    from grounded.models.registry import load_backend

    return load_backend(tiny_dir, "segmenter", torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (60, 96, 3), dtype=np.uint8), rng.integers(0, 256, (88, 56, 3), dtype=np.uint8)]


@functools.cache
def transformers_pair(folder: str):
    from transformers import SamHQModel, SamHQProcessor

    return SamHQProcessor.from_pretrained(folder), SamHQModel.from_pretrained(folder).eval()


def reference(folder: str, image: np.ndarray, boxes: np.ndarray, multimask: bool, threshold: float):
    processor, model = transformers_pair(folder)
    inputs = processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, multimask_output=multimask)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"],
                                         mask_threshold=threshold)[0]
    return out.pred_masks[0], out.iou_scores[0], masks.numpy()


def test_registry_picks_the_backend(segmenter):
    assert type(segmenter).__name__ == "SamHQSegmenter" and segmenter.model.config.model_type == "sam_hq"
    assert "text_tokens" in segmenter.refused_options  # CLIP adapters are SAM's, not SAM-HQ's


@pytest.mark.parametrize("multimask, threshold", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_parity_with_transformers(tiny_dir, segmenter, images, multimask, threshold):
    image = images[0]
    ref_logits, ref_iou, ref_masks = reference(tiny_dir, image, BOXES, multimask, threshold)
    features = segmenter.encode([image])
    logits, iou = segmenter.decode(features, 0, BOXES, multimask)
    k = 3 if multimask else 1
    assert logits.shape == (len(BOXES), k, *ref_logits.shape[-2:]) and iou.shape == (len(BOXES), k)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)
    for j in range(k):
        masks = segmenter.upscale(features, 0, logits[:, j], threshold)
        assert masks.shape == (len(BOXES), *image.shape[:2]) and masks.dtype == bool
        assert (masks != ref_masks[:, j]).mean() <= 1e-3


def test_the_hq_features_matter(segmenter, images):
    """Without the early ViT features the HQ decoder gives other masks: the backend must pass them on."""
    from grounded.models.segmenter import boxes_to_sam_frame

    features = segmenter.encode(images[:1])
    logits, _ = segmenter.decode(features, 0, BOXES, False)
    boxes = torch.as_tensor(boxes_to_sam_frame(BOXES, (60, 96), segmenter.longest_edge), dtype=torch.float32)
    with torch.no_grad():
        without = segmenter.model(image_embeddings=features.embeddings, input_boxes=boxes[None],
                                  multimask_output=False).pred_masks[0]
    assert without.shape == logits.shape and not torch.allclose(without, logits, atol=1e-4)


def test_batching_and_chunking_change_nothing(segmenter, images):
    together = segmenter.encode(images)
    assert len(together) == 2 and together.intermediate.shape[0] == 2
    alone = segmenter.encode(images[1:])
    boxes = np.clip(BOXES, 0, [56, 88, 56, 88])
    logits, iou = segmenter.decode(together, 1, boxes, True)
    alone_logits, alone_iou = segmenter.decode(alone, 0, boxes, True)
    torch.testing.assert_close(logits, alone_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, alone_iou, atol=1e-5, rtol=1e-5)
    first, _ = segmenter.decode(together, 1, boxes[:1], True)
    torch.testing.assert_close(first, logits[:1], atol=1e-5, rtol=1e-5)
def test_through_the_predictor(tiny_dir, tiny_model_dirs, images):
    """Tiny Grounding DINO + this segmenter end to end: one batched call == one image at a time (images of
    one size: the detector's batch padding is not what this tests)."""
    from grounded import Predictor

    images = [images[0], np.ascontiguousarray(images[0][::-1])]
    predictor = Predictor(str(tiny_model_dirs[0]), tiny_dir, box_threshold=0.2, text_threshold=0.0)
    batch = predictor.segment_batch(images, "car . wheel .")
    for image, together in zip(images, batch, strict=True):
        predictor.set_image(image)
        alone = predictor.segment("car . wheel .")
        assert len(alone) == len(together) > 0 and alone.mask.shape[1:] == image.shape[:2]
        np.testing.assert_allclose(alone.xyxy, together.xyxy, atol=1e-3)
        assert (alone.mask != together.mask).mean() <= 1e-3
    with pytest.raises(Exception, match="text_tokens"):
        predictor.segment("car", text_tokens=True)
