"""The models' view of an image (reduced) and the way back to the displayed size (thin images: tests/test_padding.py)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded.label.modelview import ModelView, restore, to_model
from grounded.utils.masks import rle_to_mask


@pytest.mark.parametrize(
    "original, scaled",
    [((300, 400), (300, 400)),  # untouched
     ((3000, 4000), (750, 1000)),  # decoded reduced
     ((1, 1), (1, 1)),  # thin images pass as they are: the Predictor pads them (grounded/pipeline/padding.py)
     ((3, 2000), (2, 1333))],
)
def test_to_model_sizes(original, scaled):
    given = np.zeros((*scaled, 3), np.uint8)
    image, view = to_model(given, original)
    assert view == ModelView(original, scaled) and image is given
    assert view.untouched == (original == scaled)


def _boxes(hw: tuple[int, int], boxes: list[list[int]]) -> sv.Detections:
    """Detections whose masks fill their XYXY boxes exactly, on an image of size ``hw``."""
    mask = np.zeros((len(boxes), *hw), bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        mask[k, y0:y1, x0:x1] = True
    return sv.Detections(xyxy=np.array(boxes, np.float32), mask=mask, confidence=np.linspace(0.9, 0.5, len(boxes)),
                         class_id=np.arange(len(boxes)))


def test_restore_scales_boxes_and_upsamples_masks():
    view = ModelView(original=(400, 600), scaled=(100, 150))
    found = _boxes((100, 150), [[30, 10, 60, 20], [0, 50, 150, 100]])
    mask = found.mask.copy()
    back, rles = restore(found, view)
    assert back.mask is None
    np.testing.assert_allclose(back.xyxy, [[120, 40, 240, 80], [0, 200, 600, 400]])
    full = [rle_to_mask(rle) for rle in rles]
    assert full[0].shape == (400, 600) and full[0].sum() == 16 * mask[0].sum()
    assert full[0][40:80, 120:240].all() and full[1][200:].all() and not full[1][:200].any()


def test_restore_drops_what_lies_outside_the_image():
    view = ModelView(original=(4, 80), scaled=(2, 40))
    back, rles = restore(_boxes((16, 40), [[5, 0, 10, 4], [0, 8, 40, 16]]), view)
    assert len(back) == 1 and back.xyxy.tolist() == [[10, 0, 20, 4]]
    assert [rle_to_mask(r).sum() for r in rles] == [40]
