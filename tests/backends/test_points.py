"""Point prompts (clicks) through the Segmenter interface: parity with transformers' own
``processor(images=, input_points=, input_labels=, input_boxes=)`` + ``model(**inputs, input_masks=)`` +
``post_process_masks`` for every SAM-family backend (tiny random models); tolerances in conftest_segmenters.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest_segmenters import MASK_TOLERANCE, load, transformers_pair, two_images

from grounded.errors import InputError
from grounded.models.interfaces import PointPrompt

# kind -> (builder in grounded.testing, packages it needs, how deep the processor nests points: SAM 3, SAM 2 4)
KINDS = {
    "sam": ("grounded.testing.tiny:build_tiny_segmenter", (), 3),
    "sam_hq": ("grounded.testing.tiny_segmenters:build_tiny_sam_hq", (), 3),
    "sam2": ("grounded.testing.tiny_segmenters:build_tiny_sam2", ("torchvision",), 4),
    "edgetam": ("grounded.testing.tiny_segmenters:build_tiny_edgetam", ("torchvision", "timm"), 4),
    "sam3_tracker": ("grounded.testing.tiny_segmenters:build_tiny_sam3_tracker", ("torchvision",), 4),
}
POINTS = np.array([[40.0, 30.0], [70.5, 12.25], [10.0, 50.0]], dtype=np.float32)  # XY pixels on a 96x60 image
LABELS = np.array([1, 0, 1])
BOX = np.array([5.0, 8.0, 80.0, 55.0], dtype=np.float32)
# (points used, box?, previous mask?, multimask)
CASES = [(1, False, False, True), (3, False, False, False), (2, True, False, True), (0, True, False, False),
         (3, True, True, False), (2, False, True, True)]


@pytest.fixture(scope="module", params=sorted(KINDS))
def tiny(request, tmp_path_factory) -> tuple[str, str, object]:
    """(kind, folder, backend) of a tiny checkpoint loaded through the registry."""
    import importlib

    target, requires, _ = KINDS[request.param]
    for module in requires:
        pytest.importorskip(module, reason=f"{request.param} needs {module} (the backends extra)")
    module, name = target.split(":")
    folder = str(getattr(importlib.import_module(module), name)(tmp_path_factory.mktemp(request.param)))
    return request.param, folder, load(folder, "segmenter")


def _nest(values: list, depth: int) -> list:
    """Points / labels nested as the processor reads them: [image][object][point] (SAM adds none, SAM 2 one more)."""
    return [values] if depth == 3 else [[values]]


def reference(kind: str, folder: str, image: np.ndarray, n: int, box: bool, previous: torch.Tensor | None,
              multimask: bool):
    """-> logits (1, K, h, w), IoU (1, K), masks (1, K, H, W): the plain transformers call."""
    processor, model = transformers_pair(folder)
    depth = KINDS[kind][2]
    given = {}
    if n:
        given.update(input_points=_nest(POINTS[:n].tolist(), depth), input_labels=_nest(LABELS[:n].tolist(), depth))
    if box:
        given["input_boxes"] = [[BOX.tolist()]]
    inputs = processor(images=image, return_tensors="pt", **given)
    if "input_points" in inputs:
        inputs["input_points"] = inputs["input_points"].float()
    if "input_boxes" in inputs:
        inputs["input_boxes"] = inputs["input_boxes"].float()
    with torch.no_grad():
        out = model(**inputs, input_masks=None if previous is None else previous[None, None],
                    multimask_output=multimask)
    sizes = [inputs["original_sizes"]] + ([inputs["reshaped_input_sizes"]] if "reshaped_input_sizes" in inputs else [])
    masks = processor.post_process_masks(out.pred_masks, *sizes, mask_threshold=0.0)[0]
    return out.pred_masks[0], out.iou_scores[0], masks.numpy()


@pytest.mark.parametrize("n, box, previous, multimask", CASES)
def test_point_parity_with_transformers(tiny, n, box, previous, multimask):
    kind, folder, segmenter = tiny
    image = two_images(5)[0]
    assert segmenter.takes_points
    features = segmenter.encode([image])
    prior = None
    if previous:  # SAM's iterative refinement: the best mask of a first click, fed back as low-res logits
        first, iou = segmenter.decode_points(features, 0, PointPrompt.of(POINTS[:1], LABELS[:1]), True)
        prior = first[0, int(iou[0].argmax())]
    prompt = PointPrompt.of(POINTS[:n], LABELS[:n], BOX if box else None, prior)
    logits, iou = segmenter.decode_points(features, 0, prompt, multimask)
    ref_logits, ref_iou, ref_masks = reference(kind, folder, image, n, box, prior, multimask)
    k = 3 if multimask else 1
    assert logits.shape == (1, k, *ref_logits.shape[-2:]) and iou.shape == (1, k)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)
    masks = segmenter.upscale(features, 0, logits[0], 0.0)
    assert masks.shape == (k, *image.shape[:2]) and (masks != ref_masks[0]).mean() <= MASK_TOLERANCE


def test_clicks_change_the_mask_and_the_prior_matters(tiny):
    """A background click and a previous mask each change the answer: the backend passes them on."""
    _, _, segmenter = tiny
    features = segmenter.encode(two_images(5)[:1])
    one, _ = segmenter.decode_points(features, 0, PointPrompt.of(POINTS[:1], LABELS[:1]), False)
    two, _ = segmenter.decode_points(features, 0, PointPrompt.of(POINTS[:2], LABELS[:2]), False)
    assert not torch.allclose(one, two)
    with_prior, _ = segmenter.decode_points(features, 0, PointPrompt.of(POINTS[:1], LABELS[:1], mask_logits=one[0, 0]),
                                            False)
    assert not torch.allclose(one, with_prior)


@pytest.mark.parametrize("kwargs, message", [
    ({"points": [[1, 2]], "labels": [1, 0]}, "one label per point"),
    ({"points": [[1, 2]], "labels": [2]}, "labels must be 1"),
    ({"points": [[1, 2, 3]], "labels": [1]}, "points must be"),
    ({"points": [[float("nan"), 2]], "labels": [1]}, "finite"),
    ({"points": [], "labels": []}, "at least one point"),
    ({"box": [5, 5, 1, 1]}, "x1 > x0"),
    ({"box": [1, 2, 3]}, "box must be"),
    ({"points": [[200, 2]], "labels": [1], "image_hw": (60, 96)}, "must lie on the 96x60 image"),
    ({"points": [[1, 2]], "labels": [1], "mask_logits": np.zeros((2, 3, 4))}, "one (h, w)"),
])
def test_bad_prompts_name_the_field(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PointPrompt.of(**kwargs)


def test_a_segmenter_without_points_says_so():
    from grounded.models.interfaces import Segmenter

    class BoxesOnly(Segmenter):
        def encode(self, images): ...
        def decode(self, features, index, boxes_xyxy, multimask): ...
        def upscale(self, features, index, logits, threshold): ...
        def input_size(self, hw): ...

    segmenter = BoxesOnly(torch.nn.Linear(1, 1), None, "boxes-only")
    assert not segmenter.takes_points
    with pytest.raises(InputError, match="takes no point prompts"):
        segmenter.decode_points(None, 0, PointPrompt.of([[1, 1]], [1]), False)


def test_an_existing_mask_as_prior_lies_in_the_decoders_frame(tiny):
    """mask_prior (a fix that starts from a detection's mask) is in decode_points' frame: upscaled, it is the mask."""
    _, _, segmenter = tiny
    features = segmenter.encode(two_images(5)[:1])
    mask = np.zeros((60, 96), dtype=bool)
    mask[10:40, 20:70] = True
    prior = segmenter.mask_prior(features, 0, mask)
    logits, _ = segmenter.decode_points(features, 0, PointPrompt.of([[45, 25]], [1], mask_logits=prior), False)
    assert prior.shape == logits.shape[-2:]
    back = segmenter.upscale(features, 0, prior[None], 0.0)[0]
    assert (back & mask).sum() / (back | mask).sum() > 0.85  # low-res quantisation only (8x8 px cells here)
