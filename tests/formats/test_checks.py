"""Malformed external annotations: each gets a one-line reason before any decoder sees it (table-driven)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from grounded.errors import InputError
from grounded.formats.checks import check_bbox, check_segmentation, rle_string_counts
from grounded.formats.coco import segmentation_to_mask
from grounded.formats.yolo import parse_yolo_line
from grounded.utils.masks import mask_to_rle

H, W = 12, 16
SQUARE = [2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0]


def _rle(**change) -> dict:
    mask = np.zeros((H, W), dtype=bool)
    mask[3:9, 4:10] = True
    return {**mask_to_rle(mask), **change}


@pytest.mark.parametrize(
    "segmentation, problem",
    [
        ([SQUARE], None),
        (SQUARE, None),
        ([], None),
        (None, None),
        ([[-3.0, -2.0, 20.0, 0.0, 20.0, 14.0]], None),  # a little outside: clipped when drawn
        (_rle(), None),
        ({"size": [H, W], "counts": [H * W]}, None),  # uncompressed, all background
        ([[2.0, "a", 8.0, 2.0, 8.0, 8.0]], "non-number, 'a'"),
        ([[2.0, None, 8.0, 2.0, 8.0, 8.0]], "non-number, None"),
        ([[2.0, True, 8.0, 2.0, 8.0, 8.0]], "non-number, True"),
        ([["x", "y"]], "non-number"),
        (7, "segmentation must be polygons"),
        (7.5, "segmentation must be polygons"),
        ("garbage", "segmentation must be polygons"),
        ([SQUARE[:-1]], "odd number of coordinates (7)"),
        ([[2.0, math.nan, 8.0, 2.0, 8.0, 8.0]], "NaN or infinite"),
        ([[2.0, math.inf, 8.0, 2.0, 8.0, 8.0]], "NaN or infinite"),
        ([[2.0, 2.0, 1e12, 2.0, 8.0, 8.0]], "far outside the image (x in 0..16, y in 0..12)"),
        ([[-40.0, 2.0, 8.0, 2.0, 8.0, 8.0]], "far outside the image"),
        ({"size": [H, W]}, "RLE without 'counts'"),
        (_rle(counts="!!!garbage~~~"), "RLE counts string is garbage"),
        (_rle(counts="12"), "RLE runs cover 3 pixels"),  # well formed, wrongly sized
        (_rle(size=[H + 1, W]), "RLE size [13, 16] differs from the image's [12, 16]"),
        (_rle(size="big"), "RLE 'size' must be [height, width]"),
        ({"size": [H, W], "counts": [H * W + 5]}, f"cover {H * W + 5} pixels"),
        ({"size": [H, W], "counts": [-1, H * W + 1]}, "non-negative integers"),
        ({"size": [H, W], "counts": 3}, "string or a list of integers"),
    ],
)
def test_segmentation_checks(segmentation, problem):
    found = check_segmentation(segmentation, H, W)
    if problem is None:
        assert found is None
        assert segmentation_to_mask(segmentation, H, W).shape == (H, W)
    else:
        assert found is not None and problem in found
        with pytest.raises(InputError, match=re.escape(problem)):
            segmentation_to_mask(segmentation, H, W)  # the decoder refuses the same, never a traceback


@pytest.mark.parametrize(
    "bbox, problem",
    [
        ([1, 2, 3, 4], None),
        (None, None),
        ([1, 2, 3], "four numbers"),
        ([1, 2, "3", 4], "four numbers"),
        (5, "four numbers"),
        ([1, 2, math.nan, 4], "NaN or infinite"),
        ([1, 2, -3, 4], "negative width or height"),
        ([1e9, 2, 3, 4], "far outside"),
    ],
)
def test_bbox_checks(bbox, problem):
    found = check_bbox(bbox, H, W)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("0 0.5 0.5 0.2 0.4", (0, [[0.4, 0.3], [0.6, 0.3], [0.6, 0.7], [0.4, 0.7]])),  # a box: its corners
        ("1 0.1 0.1 0.9 0.1 0.5 0.8", (1, [[0.1, 0.1], [0.9, 0.1], [0.5, 0.8]])),
        ("1 -0.01 0 1.01 0 0.5 1", (1, [[-0.01, 0.0], [1.01, 0.0], [0.5, 1.0]])),  # a hair outside: kept
        ("   ", None),
        ("0 0.1 0.1 0.9 0.1 0.5", "5 coordinates"),  # odd
        ("0 0.1 0.1 0.9 0.1", None),  # 4 numbers: a box (corners), checked below
        ("0 0.1 0.1", "2 coordinates"),
        ("0", "0 coordinates"),
        ("x 0.1 0.1 0.9 0.1 0.5 0.8", "class 'x' is not an integer"),
        ("5 0.1 0.1 0.9 0.1 0.5 0.8", "class 5 is outside the 2 class names"),
        ("-1 0.1 0.1 0.9 0.1 0.5 0.8", "class -1 is outside"),
        ("0 0.1 nan 0.9 0.1 0.5 0.8", "NaN or infinite"),
        ("0 0.1 inf 0.9 0.1 0.5 0.8", "NaN or infinite"),
        ("0 0.1 0.1 1e9 0.1 0.5 0.8", "far outside the image (x in 0..1, y in 0..1)"),
        ("0 0.1 0.1 0.9 zero 0.5 0.8", "expected 'class x y ...' numbers"),
        ("0 0.5 0.5 -0.2 0.4", "negative width or height"),
    ],
)
def test_yolo_lines(line, expected):
    if isinstance(expected, str):
        with pytest.raises(InputError, match=re.escape(expected)):
            parse_yolo_line(line, 2)
    elif expected is None:
        parsed = parse_yolo_line(line, 2)
        assert parsed is None or parsed[1].shape == (4, 2)
    else:
        cls, xy = parse_yolo_line(line, 2)
        assert cls == expected[0]
        np.testing.assert_allclose(xy, expected[1])


def test_rle_string_counts_match_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) < rng.random()
        counts = rle_string_counts(mask_to_rle(mask)["counts"])
        assert sum(counts) == h * w
        flat = mask.flatten(order="F")
        assert sum(counts[1::2]) == int(flat.sum()) == int(mask_utils.area(mask_to_rle(mask) | {"counts": mask_to_rle(mask)["counts"].encode()}))
