"""Images too small or too thin for the models: padded before encoding, results cropped back (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded.pipeline.padding import MAX_ASPECT, MIN_SIDE, crop_detections, pad_image, padded_size


@pytest.mark.parametrize("hw, expected", [
    ((240, 360), (240, 360)),  # an ordinary photo: untouched
    ((MIN_SIDE, MIN_SIDE * MAX_ASPECT), (MIN_SIDE, MIN_SIDE * MAX_ASPECT)),  # at both bounds: untouched
    ((1, 1), (MIN_SIDE, MIN_SIDE)),
    ((3, 2000), (20, 2000)),  # 2000 / MAX_ASPECT
    ((2000, 1), (2000, 20)),
    ((1, 7), (MIN_SIDE, MIN_SIDE)),
    ((5, 5000), (50, 5000)),
])
def test_padded_size(hw, expected):
    assert padded_size(hw) == expected


def test_pad_image_keeps_pixels_top_left_and_pads_black():
    image = np.full((3, 20, 3), 200, np.uint8)
    out = pad_image(image)
    assert out.shape == (MIN_SIDE, 20, 3) and out.dtype == np.uint8
    assert (out[:3] == 200).all() and (out[3:] == 0).all()
    ordinary = np.zeros((50, 60, 3), np.uint8)
    assert pad_image(ordinary) is ordinary


def test_crop_detections_crops_masks_clips_boxes_and_drops_what_lies_in_the_padding():
    mask = np.zeros((3, 8, 8), bool)
    mask[0, :2, :4] = True  # inside the original 2 x 6 image
    mask[1, 4:, :] = True  # only in the padding
    mask[2, 1:5, 2:3] = True  # partly inside
    dets = sv.Detections(xyxy=np.array([[0, 0, 4, 2], [0, 4, 8, 8], [2, 1, 3, 5]], np.float32), mask=mask,
                         confidence=np.array([0.9, 0.8, 0.7], np.float32), class_id=np.array([0, 1, 2]))
    out = crop_detections(dets, (2, 6))
    assert out.mask.shape == (2, 2, 6)
    np.testing.assert_array_equal(out.class_id, [0, 2])
    np.testing.assert_array_equal(out.xyxy, [[0, 0, 4, 2], [2, 1, 3, 2]])


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 2000), (2000, 1), (1, 7), (4, 4), (5, 5000), (8, 4000)])
def test_tiny_and_thin_images_segment_without_error(tiny_predictor, hw):
    """Each of these failed inside transformers' image processors before padding (channel axis guessed from
    a side of 1, 3 or 4 pixels; a short side resized to 0 pixels)."""
    image = np.random.default_rng(0).integers(0, 255, (*hw, 3), dtype=np.uint8)
    tiny_predictor.set_image(image)
    found = tiny_predictor.segment(["car", "wheel"], box_threshold=0.0, text_threshold=0.0)
    h, w = hw
    assert found.mask.shape == (len(found), h, w)
    assert np.all((found.xyxy >= 0) & (found.xyxy <= [w, h, w, h]))
    if len(found):
        assert found.mask.reshape(len(found), -1).any(axis=1).all()
    if hw == (3, 2000):  # padded and unpadded images in one batch
        batch = tiny_predictor.segment_batch([image, np.zeros((40, 60, 3), np.uint8)], "car")
        assert batch[0].mask.shape[1:] == hw and batch[1].mask.shape[1:] == (40, 60)
