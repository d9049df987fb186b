"""Predictor options text_tokens / verify: refused without an adapter, defaults unchanged, masks come back."""

from __future__ import annotations

import numpy as np
import pytest

from grounded import Predictor, SegmentOptions
from grounded.errors import InputError

IMAGE = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def adapted(clip_models, trained_adapter):
    _, out = trained_adapter
    predictor = Predictor(str(clip_models["detector"]), str(clip_models["segmenter"]), device="cpu",
                          adapter=str(out), box_threshold=0.2, text_threshold=0.2, max_detections=5)
    predictor.set_image(IMAGE)
    return predictor


def test_text_tokens_without_adapter_are_refused(clip_predictor):
    clip_predictor.set_image(IMAGE)
    for value in (True, "only"):
        with pytest.raises(InputError, match="needs a trained text-prompt adapter"):
            clip_predictor.segment("car", text_tokens=value)
    with pytest.raises(InputError, match="needs a trained text-prompt adapter"):
        clip_predictor.segment("car", text_tokens=True, box_threshold=1.0)  # even with nothing detected
    with pytest.raises(InputError, match="text_tokens must be one of"):
        SegmentOptions(text_tokens="yes")
    with pytest.raises(InputError, match="verify must be one of"):
        SegmentOptions(verify="blip")


def test_defaults_are_unchanged_by_an_adapter(clip_predictor, adapted):
    clip_predictor.set_image(IMAGE)
    plain, with_adapter = clip_predictor.segment("car . wheel ."), adapted.segment("car . wheel .")
    assert len(plain) > 0
    np.testing.assert_array_equal(plain.xyxy, with_adapter.xyxy)
    np.testing.assert_array_equal(plain.mask, with_adapter.mask)
    assert "verify" not in with_adapter.data


def test_box_and_text_tokens(adapted):
    boxes = adapted.segment("car . wheel .")
    texted = adapted.segment("car . wheel .", text_tokens=True)
    np.testing.assert_array_equal(texted.xyxy, boxes.xyxy)  # same detections ...
    assert texted.mask.shape == boxes.mask.shape == (len(boxes), 96, 128)
    assert not np.array_equal(texted.mask, boxes.mask)  # ... other masks: the text tokens took part
    assert list(texted.data["phrase"]) == list(boxes.data["phrase"])


def test_text_tokens_alone(adapted):
    found = adapted.segment(["car", "wheel"], text_tokens="only")
    assert 0 < len(found) <= 2 and found.mask.shape[1:] == (96, 128) and found.mask.dtype == bool
    assert set(found.data["class_name"]) <= {"car", "wheel"}
    for k in range(len(found)):
        ys, xs = np.nonzero(found.mask[k])
        np.testing.assert_allclose(found.xyxy[k], [xs.min(), ys.min(), xs.max(), ys.max()], atol=1)


def test_verify_clip_runs_through_the_predictor(adapted):
    found = adapted.segment("car . wheel .", verify="clip")  # CLIP: the adapter's (tiny, random)
    assert {"class_name_detector", "class_id_detector", "verify", "clip_prob"} <= set(found.data)
    assert set(found.data["verify"]) <= {"confirmed", "corrected", "uncertain"}


def test_adapter_for_another_sam_is_refused_at_construction(clip_models, trained_adapter):
    _, out = trained_adapter
    with pytest.raises(InputError, match="trained for SAM"):
        Predictor(str(clip_models["detector"]), str(clip_models["other_segmenter"]), device="cpu", adapter=str(out))
