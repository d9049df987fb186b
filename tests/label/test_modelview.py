"""The models' view of an image (reduced) and the way back to the displayed size (thin images: tests/test_padding.py)."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from grounded.errors import InputError
from grounded.label import label
from grounded.label.modelview import ModelView, check_max_side, restore, side_limit, to_model
from grounded.testing.fake import FakeDetector, FakePredictor, make_images
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


class _Seeing(FakeDetector):
    """A fake detector that records the size of each image it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def _detect(self, image, ontology):
        self.seen.append(image.shape[:2])
        return super()._detect(image, ontology)


class _Sees(FakePredictor):
    """A fake predictor whose models see at most ``side`` px of an image's long side; records what it is given."""

    def __init__(self, side: int):
        super().__init__(detector=_Seeing())
        self.side = side

    @property
    def seen(self):
        return self.detector.seen

    def model_side(self, hw):
        return min(max(hw), self.side)


@pytest.mark.parametrize("max_side, given", [("model", [(45, 60), (30, 40)]), (50, [(38, 50), (30, 40)]),
                                             (None, [(300, 400), (30, 40)])])
def test_the_reduction_comes_from_the_models_unless_set(tmp_path, max_side, given):
    make_images(tmp_path / "images" / "a", 1, size=(300, 400))
    make_images(tmp_path / "images" / "b", 1, size=(30, 40))
    predictor = _Sees(60)
    label(tmp_path / "images", "car", tmp_path / "out", predictor=predictor, max_side=max_side, progress=False, preview=0)
    assert predictor.seen == given
    whole = 400  # the fakes read every image at its own size: "model" reduces nothing
    assert side_limit(max_side, FakePredictor())((300, 400)) == (whole if max_side == "model" else max_side)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "auto", True])
def test_a_bad_max_side_is_refused_saying_what_is_accepted(bad):
    with pytest.raises(InputError, match="max_side must be 'model'"):
        check_max_side(bad)
