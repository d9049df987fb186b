"""Shared checks of the segmenter backend tests (test_sam_hq.py, test_sam2.py, test_sam3.py import them).

The box-prompted reference is transformers' own: ``processor(images=image, input_boxes=[boxes])`` +
``model(**inputs, multimask_output=...)`` + ``processor.post_process_masks``. Tolerances: logits and
predicted IoU 1e-5 (features computed once and reused vs recomputed in one call), masks equal on all but
0.1% of pixels (a logit within float rounding of the threshold may flip).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

BOXES = np.array([[5, 8, 60, 70], [0, 0, 95, 59], [30.5, 10.25, 90, 50]], dtype=np.float32)  # XYXY pixels
PARITY_CASES = [(False, 0.0), (True, 0.0), (True, 0.3)]  # (multimask, mask threshold)
MASK_TOLERANCE = 1e-3  # fraction of pixels that may differ


def two_images(seed: int) -> list[np.ndarray]:
    """A landscape and a portrait RGB uint8 image."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (60, 96, 3), dtype=np.uint8), rng.integers(0, 256, (88, 56, 3), dtype=np.uint8)]


def load(folder: str, role: str):
    """The backend for ``folder`` through the registry, as a user's checkpoint is loaded."""
    from grounded.models.registry import load_backend

    return load_backend(folder, role, torch.device("cpu"), torch.float32)


@functools.cache
def transformers_pair(folder: str):
    """transformers' own processor and model for ``folder`` (cached: the references reuse them)."""
    from transformers import AutoModel, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def box_reference(folder: str, image: np.ndarray, boxes: np.ndarray, multimask: bool, threshold: float):
    """-> low-res logits (N, K, h, w), IoU (N, K), masks (N, K, H, W) bool, the plain transformers way."""
    processor, model = transformers_pair(folder)
    inputs = processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, multimask_output=multimask)
    sizes = [inputs["original_sizes"]]
    if "reshaped_input_sizes" in inputs:  # SAM's family pads to a square; SAM 2's resizes without padding
        sizes.append(inputs["reshaped_input_sizes"])
    masks = processor.post_process_masks(out.pred_masks, *sizes, mask_threshold=threshold)[0]
    return out.pred_masks[0], out.iou_scores[0], masks.numpy()


def check_parity(segmenter, folder: str, image: np.ndarray, multimask: bool, threshold: float) -> None:
    """encode + decode + upscale == the plain transformers call, within the tolerances above."""
    ref_logits, ref_iou, ref_masks = box_reference(folder, image, BOXES, multimask, threshold)
    features = segmenter.encode([image])
    logits, iou = segmenter.decode(features, 0, BOXES, multimask)
    k = 3 if multimask else 1
    assert logits.shape == (len(BOXES), k, *ref_logits.shape[-2:]) and iou.shape == (len(BOXES), k)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)
    for j in range(k):
        masks = segmenter.upscale(features, 0, logits[:, j], threshold)
        assert masks.shape == (len(BOXES), *image.shape[:2]) and masks.dtype == bool
        assert (masks != ref_masks[:, j]).mean() <= MASK_TOLERANCE


def check_batching(segmenter, images: list[np.ndarray]) -> None:
    """Two images encoded together == the second alone; boxes decoded in smaller batches == all at once."""
    together = segmenter.encode(images)
    assert len(together) == 2 and together.image_sizes == [im.shape[:2] for im in images]
    alone = segmenter.encode(images[1:])
    h, w = images[1].shape[:2]
    boxes = np.clip(BOXES, 0, [w, h, w, h])
    logits, iou = segmenter.decode(together, 1, boxes, True)
    alone_logits, alone_iou = segmenter.decode(alone, 0, boxes, True)
    torch.testing.assert_close(logits, alone_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, alone_iou, atol=1e-5, rtol=1e-5)
    first, _ = segmenter.decode(together, 1, boxes[:1], True)
    torch.testing.assert_close(first, logits[:1], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(segmenter.upscale(together, 1, logits[:, 0], 0.0),
                                  segmenter.upscale(alone, 0, alone_logits[:, 0], 0.0))


def check_through_predictor(detector_dir: str, segmenter_dir: str, image: np.ndarray) -> None:
    """Tiny Grounding DINO + the segmenter end to end: one batched call == one image at a time (two images of
    one size: the detector's batch padding is not what this tests); text_tokens refused."""
    import pytest

    from grounded import Predictor

    images = [image, np.ascontiguousarray(image[::-1])]
    predictor = Predictor(detector_dir, segmenter_dir, box_threshold=0.2, text_threshold=0.0)
    batch = predictor.segment_batch(images, "car . wheel .")
    for one, together in zip(images, batch, strict=True):
        predictor.set_image(one)
        alone = predictor.segment("car . wheel .")
        assert len(alone) == len(together) > 0 and alone.mask.shape[1:] == one.shape[:2]
        np.testing.assert_allclose(alone.xyxy, together.xyxy, atol=1e-3)
        assert (alone.mask != together.mask).mean() <= MASK_TOLERANCE
    with pytest.raises(Exception, match="text_tokens"):
        predictor.segment("car", text_tokens=True)
