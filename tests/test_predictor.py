"""Predictor behaviour on tiny models: order, outputs, prompt splitting, colour order, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from grounded import Predictor
from grounded.errors import InputError, ModelLoadError, OrderError
from grounded.ontology import Ontology


def test_segment_before_set_image_is_an_order_error(tiny_model_dirs):
    predictor = Predictor(*map(str, tiny_model_dirs))
    with pytest.raises(OrderError, match="set_image"):
        predictor.segment("a wheel")


def test_output_fields_shapes_and_types(tiny_predictor, photo):
    tiny_predictor.set_image(photo)
    found = tiny_predictor.segment(["wheel", "car"])
    n, (h, w) = len(found), photo.shape[:2]
    assert n > 0
    assert found.xyxy.shape == (n, 4) and found.xyxy.dtype == np.float32
    assert found.mask.shape == (n, h, w) and found.mask.dtype == bool
    assert found.confidence.shape == (n,) and np.all(np.diff(found.confidence) <= 0)
    assert set(found.class_id.tolist()) <= {0, 1}
    assert set(found.data["class_name"]) <= {"wheel", "car"}
    assert found.data["phrase"].shape == (n,) and found.data["mask_score"].shape == (n,)
    assert np.all((found.xyxy >= 0) & (found.xyxy <= [w, h, w, h]))


def test_nothing_found_gives_empty_detections_with_every_field(tiny_predictor, photo):
    tiny_predictor.set_image(photo)
    found = tiny_predictor.segment("wheel", box_threshold=1.0)
    assert len(found) == 0
    assert found.mask.shape == (0, *photo.shape[:2])
    assert set(found.data) == {"class_name", "phrase", "mask_score"}


def test_long_prompt_split_into_captions_equals_separate_runs(tiny_predictor, photo):
    """Phrases that do not fit one caption run as a batch of captions; results equal running each alone."""
    words = ("wheel car truck bus dog cat person bird bear tree road sign bottle box shelf apple banana "
             "orange bag chair table mug").split()
    onto = Ontology.from_classes(words)
    captions = tiny_predictor.detector.captions_for(onto)
    assert len(captions) >= 2  # the tiny detector reads 32 tokens: 22 one-token phrases need 46
    tiny_predictor.set_image(photo)
    together = tiny_predictor.segment(onto, nms="none")
    expected = []
    for caption in captions:
        alone = tiny_predictor.segment(list(caption.phrases), nms="none")
        expected += [(onto.class_names.index(n), float(c)) for n, c in zip(alone.data["class_name"], alone.confidence, strict=True)]
    got = sorted(zip(together.class_id.tolist(), together.confidence.tolist(), strict=True))
    expected.sort()
    assert len(got) == len(expected) > 0
    assert [k for k, _ in got] == [k for k, _ in expected]
    np.testing.assert_allclose([c for _, c in got], [c for _, c in expected], atol=1e-5)


@pytest.mark.parametrize("which", ["detector", "segmenter"])
def test_models_are_given_rgb(tiny_predictor, which):
    """A pure red image reaches each model with channel 0 (R) high and channels 1, 2 low."""
    red = np.zeros((64, 96, 3), np.uint8)
    red[..., 0] = 255
    model = getattr(tiny_predictor, which)
    pixels = model.preprocess([red])[0][0]  # (3, h, w), normalised; SAM pads bottom-right
    r, g, b = (float(pixels[c, 0, 0]) for c in range(3))
    assert r > 1.5 and g < -1.5 and b < -1.5


@pytest.mark.parametrize(
    "options, message",
    [({"box_threshold": 1.5}, r"in \[0, 1\]"), ({"nms": "sometimes"}, "nms must be one of"),
     ({"colour": "red"}, "unknown option"), ({"max_detections": 0}, "positive integer")],
)
def test_bad_options(tiny_predictor, photo, options, message):
    tiny_predictor.set_image(photo)
    with pytest.raises(InputError, match=message):
        tiny_predictor.segment("wheel", **options)


def test_failed_set_image_clears_the_previous_image(tiny_model_dirs, photo, tmp_path):
    predictor = Predictor(*map(str, tiny_model_dirs))
    predictor.set_image(photo)
    with pytest.raises(InputError, match="not found"):
        predictor.set_image(tmp_path / "missing.png")
    assert not predictor.is_image_set  # never silently segment the old image


def test_missing_model_folder_names_the_model(tmp_path, tiny_model_dirs):
    with pytest.raises(ModelLoadError, match="detector model folder .* does not exist"):
        Predictor(str(tmp_path / "nope"), str(tiny_model_dirs[1]))
    with pytest.raises(ModelLoadError, match="segmenter model .* is a .grounding-dino. checkpoint, expected .sam."):
        Predictor(str(tiny_model_dirs[0]), str(tiny_model_dirs[0]))  # a detector is not a SAM


def test_hub_name_offline_fails_fast_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match=r"IDEA-Research/grounding-dino-tiny.*--detector DIR"):
        Predictor("IDEA-Research/grounding-dino-tiny", "facebook/sam-vit-base")


def test_module_level_segment_reuses_the_predictor(tiny_model_dirs, photo):
    import grounded
    from grounded.pipeline import api

    det, seg = map(str, tiny_model_dirs)
    first = grounded.segment(photo, "wheel", detector=det, segmenter=seg, box_threshold=0.2, text_threshold=0.0)
    predictor = api.get_predictor(detector=det, segmenter=seg)
    second = grounded.segment(photo, "wheel", detector=det, segmenter=seg, box_threshold=0.2, text_threshold=0.0)
    assert api.get_predictor(detector=det, segmenter=seg) is predictor
    np.testing.assert_array_equal(first.mask, second.mask)


def test_multimask_picks_the_best_predicted_iou(tiny_predictor, photo):
    tiny_predictor.set_image(photo)
    single = tiny_predictor.segment("wheel")
    multi = tiny_predictor.segment("wheel", multimask=True)
    np.testing.assert_array_equal(single.xyxy, multi.xyxy)
    enc = tiny_predictor._encoding
    _, iou = tiny_predictor.segmenter.decode(enc.segmenter, 0, multi.xyxy, True)
    np.testing.assert_allclose(multi.data["mask_score"], iou.max(dim=1).values.numpy(), atol=1e-6)


def test_describe_is_json_able(tiny_predictor):
    import json

    described = json.loads(json.dumps(tiny_predictor.describe()))
    assert described["options"] == json.loads(json.dumps(dataclasses.asdict(tiny_predictor.options)))
