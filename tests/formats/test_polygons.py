"""Pixel-edge outlines: exact under pycocotools, and parts/holes counted the same by both methods."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from grounded.formats import polygons
from grounded.formats.polygons import (
    bridge_outlines,
    count_parts_and_holes,
    loop_area,
    mask_boundaries,
    mask_to_polygon,
)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


@pytest.fixture(params=["opencv", "numpy"])
def counting_path(request, monkeypatch):
    """Count parts and holes with OpenCV's connected components, or with the traced loops (no OpenCV)."""
    if request.param == "opencv":
        pytest.importorskip("cv2")
    else:
        monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError, as where it is absent
    return request.param


CASES = [  # (mask, parts, holes): degenerate masks first (OpenCV 5 asserts on an empty image where 4.x returned)
    pytest.param(_mask(["...", "...", "..."]), 0, 0, id="empty"),
    pytest.param(np.zeros((0, 4), bool), 0, 0, id="no-pixels-at-all"),
    pytest.param(_mask(["#"]), 1, 0, id="1px-image"),
    pytest.param(_mask(["...", ".#.", "..."]), 1, 0, id="1px"),
    pytest.param(_mask(["..", ".#"]), 1, 0, id="1px-in-corner"),
    pytest.param(_mask(["####", "####", "####"]), 1, 0, id="whole-image"),
    pytest.param(_mask(["###", "#.#", "###"]), 1, 1, id="whole-image-but-centre"),
    pytest.param(_mask(["#####"]), 1, 0, id="line-whole-row"),
    pytest.param(_mask(["#", "#", "#"]), 1, 0, id="line-whole-column"),
    pytest.param(_mask([".....", ".###.", "....."]), 1, 0, id="line-inside"),
    pytest.param(_mask(["#..", ".#.", "..#"]), 3, 0, id="line-diagonal"),  # 4-connectivity: three parts
    pytest.param(_mask(["####", "#..#", "#.##", "###."]), 1, 1, id="hole"),
    pytest.param(_mask(["#####", "#.#.#", "#####"]), 1, 2, id="two-holes"),
    pytest.param(_mask(["#.#", "###"]), 1, 0, id="notch-open-to-border"),
    pytest.param(_mask(["#####", "#...#", "#.#.#", "#...#", "#####"]), 2, 1, id="part-inside-hole"),
    pytest.param(_mask(["#.#"]), 2, 0, id="two-parts"),
    pytest.param(_mask(["#.", ".#"]), 2, 0, id="diagonal-pixels"),
    pytest.param(_mask([".#.", "#.#", ".#."]), 4, 0, id="centre-leaks-diagonally"),  # 8-connected background
]


@pytest.mark.parametrize("mask, parts, holes", CASES)
def test_parts_holes_and_polygon(mask, parts, holes, counting_path):
    assert (polygons._label(np.ones((1, 1), bool), 4) is None) == (counting_path == "numpy")
    assert count_parts_and_holes(mask) == (parts, holes)
    loops = mask_boundaries(mask)
    assert sum(loop_area(lp) > 0 for lp in loops) == parts and sum(loop_area(lp) < 0 for lp in loops) == holes
    assert sum(loop_area(lp) for lp in loops) == mask.sum()  # outlines minus holes = pixel count
    polygon = mask_to_polygon(mask)
    assert (polygon is not None) == ((parts, holes) == (1, 0))
    if polygon is not None:  # exact: rasterised back, the polygon covers the mask's pixels and no others
        assert np.array_equal(_fill(np.asarray(polygon), mask.shape), mask)


def test_random_masks_trace_exactly_and_counts_agree():
    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((10, 13)) < rng.uniform(0.3, 0.9)
        fast = count_parts_and_holes(mask)
        loops = mask_boundaries(mask)
        traced = (sum(loop_area(lp) > 0 for lp in loops), sum(loop_area(lp) < 0 for lp in loops))
        assert fast == traced
        assert sum(loop_area(lp) for lp in loops) == mask.sum()  # outlines minus holes = pixel count
        polygon = mask_to_polygon(mask)
        assert (polygon is not None) == (fast == (1, 0))
        if polygon is not None:
            assert np.array_equal(_fill(np.asarray(polygon), mask.shape), mask)


def _fill(polygon: np.ndarray, shape) -> np.ndarray:
    rle = mask_utils.frPyObjects([polygon.reshape(-1).astype(float).tolist()], *shape)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def test_bridged_outline_covers_every_part():
    mask = _mask(["##....##", "##....##", "........", "...##..."])
    outlines = [lp for lp in mask_boundaries(mask) if loop_area(lp) > 0]
    filled = _fill(bridge_outlines(outlines), mask.shape)
    assert (filled & mask).sum() == mask.sum()  # every part is inside
    assert (filled & ~mask).sum() <= 6  # plus at most the bridge lines
