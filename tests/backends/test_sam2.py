"""SAM 2 and EdgeTAM segmenter backends: parity with transformers' own processor + model + post-processing.

The reference, per image: ``Sam2Processor(images=image, input_boxes=[boxes])`` + ``model(**inputs,
multimask_output=...)`` + ``processor.post_process_masks(pred_masks, original_sizes)``. Tolerances: logits
and predicted IoU 1e-5 (same weights and ops: features computed once and reused vs recomputed per call),
masks equal on all but 0.1% of pixels (a logit within float rounding of the threshold may flip).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from grounded.errors import ModelLoadError

KINDS = {"sam2": ("build_tiny_sam2", "Sam2Segmenter", ("torchvision",)),
         "edgetam": ("build_tiny_edgetam", "EdgeTamSegmenter", ("torchvision", "timm"))}
BOXES = np.array([[5, 8, 60, 70], [0, 0, 95, 59], [30.5, 10.25, 90, 50]], dtype=np.float32)  # XYXY pixels


@pytest.fixture(scope="module", params=sorted(KINDS))
def tiny_dir(request, tmp_path_factory) -> tuple[str, str]:
    """(model_type, folder) of a tiny checkpoint saved with save_pretrained."""
    builder, _, requires = KINDS[request.param]
    for module in requires:
        pytest.importorskip(module, reason=f"{request.param} needs {module} (the backends extra)")
    from grounded.testing import tiny_segmenters

    folder = getattr(tiny_segmenters, builder)(tmp_path_factory.mktemp(request.param))
    return request.param, str(folder)


@pytest.fixture(scope="module")
def segmenter(tiny_dir):
    from grounded.models.registry import load_backend

    return load_backend(tiny_dir[1], "segmenter", torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (60, 96, 3), dtype=np.uint8), rng.integers(0, 256, (88, 56, 3), dtype=np.uint8)]


@functools.cache
def transformers_pair(folder: str):
    from transformers import AutoModel, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def reference(folder: str, image: np.ndarray, boxes: np.ndarray, multimask: bool, threshold: float = 0.0):
    processor, model = transformers_pair(folder)
    inputs = processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, multimask_output=multimask)
    masks = processor.post_process_masks(out.pred_masks, inputs["original_sizes"], mask_threshold=threshold)[0]
    return out.pred_masks[0], out.iou_scores[0], masks.numpy()


def test_registry_picks_the_backend(tiny_dir, segmenter):
    kind, _ = tiny_dir
    assert type(segmenter).__name__ == KINDS[kind][1]
    assert segmenter.model.config.model_type == kind
    assert "text_tokens" in segmenter.refused_options


@pytest.mark.parametrize("multimask, threshold", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_parity_with_transformers(tiny_dir, segmenter, images, multimask, threshold):
    image = images[0]
    ref_logits, ref_iou, ref_masks = reference(tiny_dir[1], image, BOXES, multimask, threshold)
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


def test_batching_and_chunking_change_nothing(segmenter, images):
    together = segmenter.encode(images)
    assert len(together) == 2 and together.image_sizes == [(60, 96), (88, 56)]
    alone = segmenter.encode(images[1:])
    boxes = np.clip(BOXES, 0, [56, 88, 56, 88])
    logits, iou = segmenter.decode(together, 1, boxes, True)
    alone_logits, alone_iou = segmenter.decode(alone, 0, boxes, True)
    torch.testing.assert_close(logits, alone_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, alone_iou, atol=1e-5, rtol=1e-5)
    first, _ = segmenter.decode(together, 1, boxes[:1], True)  # boxes in smaller batches: same rows
    torch.testing.assert_close(first, logits[:1], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(segmenter.upscale(together, 1, logits[:, 0], 0.0),
                                  segmenter.upscale(alone, 0, alone_logits[:, 0], 0.0))


def test_no_boxes(segmenter, images):
    features = segmenter.encode(images[:1])
    logits, iou = segmenter.decode(features, 0, np.zeros((0, 4), dtype=np.float32), False)
    assert logits.shape[:2] == (0, 1) and iou.shape == (0, 1)
    assert segmenter.upscale(features, 0, logits[:, 0], 0.0).shape == (0, 60, 96)


def test_missing_extra_names_it(tiny_dir, monkeypatch):
    import sys

    from grounded.models.registry import load_backend

    monkeypatch.setitem(sys.modules, KINDS[tiny_dir[0]][2][-1], None)  # importing it now raises ImportError
    with pytest.raises(ModelLoadError, match=r'grounded\[backends\]'):
        load_backend(tiny_dir[1], "segmenter", torch.device("cpu"), torch.float32)


def test_through_the_predictor(tiny_dir, tiny_model_dirs, images):
    """Tiny Grounding DINO + this segmenter end to end: one batched call == one image at a time (images of
    one size: the detector's batch padding is not what this tests)."""
    from grounded import Predictor

    images = [images[0], np.ascontiguousarray(images[0][::-1])]
    predictor = Predictor(str(tiny_model_dirs[0]), tiny_dir[1], box_threshold=0.2, text_threshold=0.0)
    batch = predictor.segment_batch(images, "car . wheel .")
    for image, together in zip(images, batch, strict=True):
        predictor.set_image(image)
        alone = predictor.segment("car . wheel .")
        assert len(alone) == len(together) > 0 and alone.mask.shape[1:] == image.shape[:2]
        np.testing.assert_allclose(alone.xyxy, together.xyxy, atol=1e-3)
        assert (alone.mask != together.mask).mean() <= 1e-3
    with pytest.raises(Exception, match="text_tokens"):
        predictor.segment("car", text_tokens=True)
