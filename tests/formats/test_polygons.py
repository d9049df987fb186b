"""Pixel-edge outlines: exact under pycocotools, and parts/holes counted the same by both methods."""

from __future__ import annotations

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


@pytest.mark.parametrize(
    "rows, parts, holes",
    [
        (["#"], 1, 0),
        (["##", "##"], 1, 0),
        (["###", "#.#", "###"], 1, 1),
        (["#.#"], 2, 0),
        (["#.", ".#"], 2, 0),  # diagonal pixels are two parts (4-connectivity)
        ([".#.", "#.#", ".#."], 4, 0),  # the centre hole leaks out diagonally (8-connected background)
        (["####", "#..#", "#.##", "###."], 1, 1),
        (["...", "...", "..."], 0, 0),
    ],
)
def test_parts_and_holes(rows, parts, holes, monkeypatch):
    mask = _mask(rows)
    assert count_parts_and_holes(mask) == (parts, holes)
    monkeypatch.setattr(polygons, "_label", lambda mask, connectivity: None)  # the pure tracing path
    assert count_parts_and_holes(mask) == (parts, holes)


def test_random_masks_trace_exactly_and_counts_agree(monkeypatch):
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
            rle = mask_utils.frPyObjects([polygon], *mask.shape)
            assert np.array_equal(mask_utils.decode(rle)[..., 0].astype(bool), mask)


def _fill(polygon: np.ndarray, shape) -> np.ndarray:
    rle = mask_utils.frPyObjects([polygon.reshape(-1).astype(float).tolist()], *shape)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def test_bridged_outline_covers_every_part():
    mask = _mask(["##....##", "##....##", "........", "...##..."])
    outlines = [lp for lp in mask_boundaries(mask) if loop_area(lp) > 0]
    filled = _fill(bridge_outlines(outlines), mask.shape)
    assert (filled & mask).sum() == mask.sum()  # every part is inside
    assert (filled & ~mask).sum() <= 6  # plus at most the bridge lines
