"""Parity: the pipeline equals a straightforward reference written with transformers' own calls.

The reference: one image, one caption, GroundingDinoProcessor + GroundingDinoForObjectDetection +
``post_process_grounded_object_detection``, boxes clipped to the image, all boxes to SAM in one call with
SamProcessor + SamModel + ``post_process_masks``. Class of a box: the phrase whose tokens hold its highest
probability. Same tiny models, loaded from the same folders.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel, SamProcessor

PHRASES = ["wheel", "car", "front bumper"]
BOX_THRESHOLD = 0.2


def reference(image: np.ndarray, detector_dir, segmenter_dir):
    processor = AutoProcessor.from_pretrained(detector_dir)
    model = GroundingDinoForObjectDetection.from_pretrained(detector_dir).eval()
    caption = " . ".join(PHRASES) + " ."
    inputs = processor(images=image, text=caption, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    h, w = image.shape[:2]
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=BOX_THRESHOLD, text_threshold=0.0, target_sizes=[(h, w)]
    )[0]
    # class: argmax over phrases of the max probability inside the phrase's tokens
    ids = inputs["input_ids"][0].tolist()
    spans, pos = [], 1
    for phrase in PHRASES:
        n = len(processor.tokenizer(phrase, add_special_tokens=False)["input_ids"])
        spans.append((pos, pos + n))
        pos += n + 1
    assert pos == len(ids) - 1  # [SEP] follows the last "."
    probs = outputs.logits[0].sigmoid()
    keep = probs.max(-1).values > BOX_THRESHOLD
    span_best = torch.stack([probs[keep][:, s:e].max(-1).values for s, e in spans], dim=1)
    classes = span_best.argmax(1).numpy()
    scores = result["scores"].numpy()
    boxes = result["boxes"].clamp(min=0)
    boxes = torch.minimum(boxes, torch.tensor([w, h, w, h], dtype=boxes.dtype)).numpy()
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes = boxes[order], scores[order], classes[order]

    sam_processor = SamProcessor.from_pretrained(segmenter_dir)
    sam = SamModel.from_pretrained(segmenter_dir).eval()
    sam_inputs = sam_processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        sam_out = sam(**sam_inputs, multimask_output=False)
    masks = sam_processor.post_process_masks(
        sam_out.pred_masks, sam_inputs["original_sizes"], sam_inputs["reshaped_input_sizes"]
    )[0][:, 0].numpy()
    return boxes, scores, classes, masks, sam_out.iou_scores[0, :, 0].numpy()


def test_pipeline_matches_transformers_reference(tiny_model_dirs, photo):
    from grounded import Predictor

    detector_dir, segmenter_dir = map(str, tiny_model_dirs)
    ref_boxes, ref_scores, ref_classes, ref_masks, ref_iou = reference(photo, detector_dir, segmenter_dir)
    assert len(ref_boxes) > 0, "the reference found nothing: the test would compare nothing"

    predictor = Predictor(detector_dir, segmenter_dir, box_threshold=BOX_THRESHOLD, text_threshold=0.0,
                          nms="none", max_detections=1000)
    predictor.set_image(photo)
    ours = predictor.segment(PHRASES)

    assert len(ours) == len(ref_boxes)
    np.testing.assert_allclose(ours.xyxy, ref_boxes, atol=1e-3)
    np.testing.assert_allclose(ours.confidence, ref_scores, atol=1e-5)
    np.testing.assert_array_equal(ours.class_id, ref_classes)
    assert ours.data["class_name"].tolist() == [PHRASES[c] for c in ref_classes]
    np.testing.assert_allclose(ours.data["mask_score"], ref_iou, atol=1e-4)
    assert ours.mask.shape == ref_masks.shape == (len(ref_boxes), *photo.shape[:2])
    differing = (ours.mask != ref_masks).mean()
    assert differing < 1e-4, f"{differing:.2e} of mask pixels differ from the reference"


@pytest.mark.parametrize("prompts", [["wheel"], ["car", "front bumper"]])
def test_caching_and_prompt_order_change_nothing(tiny_predictor, photo, prompts):
    """A second prompt on a set image equals the same prompt on a freshly set image."""
    tiny_predictor.set_image(photo)
    tiny_predictor.segment("something else entirely")  # reuse the cached encodings in between
    cached = tiny_predictor.segment(prompts)
    tiny_predictor.set_image(photo)
    fresh = tiny_predictor.segment(prompts)
    np.testing.assert_array_equal(cached.xyxy, fresh.xyxy)
    np.testing.assert_array_equal(cached.class_id, fresh.class_id)
    np.testing.assert_array_equal(cached.mask, fresh.mask)


def test_batch_equals_one_at_a_time(tiny_predictor, photo):
    flipped = np.ascontiguousarray(photo[:, ::-1])  # same size, different content
    batch = tiny_predictor.segment_batch([photo, flipped], ["wheel", "car"])
    for image, got in zip([photo, flipped], batch, strict=True):
        tiny_predictor.set_image(image)
        single = tiny_predictor.segment(["wheel", "car"])
        assert len(got) == len(single)
        np.testing.assert_allclose(got.xyxy, single.xyxy, atol=1e-3)
        np.testing.assert_allclose(got.confidence, single.confidence, atol=1e-5)
        np.testing.assert_array_equal(got.class_id, single.class_id)
        assert (got.mask != single.mask).mean() < 1e-4
