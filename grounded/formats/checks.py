"""Cheap checks of external annotations before anything is decoded: shapes, numbers, sizes, bounds.

Readers call these on every polygon, RLE and box of a dataset they did not write, so malformed input gives
a one-line reason instead of a traceback deep in ``pycocotools`` or NumPy, and nothing can make a decoder
allocate without bound: pycocotools rasterises a polygon edge by edge, so a NaN or a 1e12 coordinate asks
for memory in proportion, and an RLE whose runs do not add up to H x W makes its C decoder write past the
mask. Each function returns ``None`` when the input is fine, else the reason (a short string). Coordinates
are XY pixels (YOLO's normalised ones times the image size); a point more than one image width or height
outside the image is refused as absurd (:data:`MARGIN`); nearer ones are clipped by the rasteriser.
"""

from __future__ import annotations

import math
from typing import Any

from grounded.errors import quote

MARGIN = 1.0  # points may lie at most this many image widths / heights outside the image


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_points(values: list[Any], height: int, width: int, what: str = "polygon") -> str | None:
    """A flat ``[x0, y0, x1, y1, ...]`` list: numbers, finite, an even count, within :data:`MARGIN`."""
    if not isinstance(values, (list, tuple)):
        return f"{what} must be a list of numbers, got {quote(values, 60)}"
    bad = next((i for i, v in enumerate(values) if not _is_number(v)), None)
    if bad is not None:
        return f"{what} holds a non-number, {quote(values[bad], 40)}"
    if len(values) % 2:
        return f"{what} has an odd number of coordinates ({len(values)}); expected x, y pairs"
    if not all(math.isfinite(v) for v in values):
        return f"{what} holds a NaN or infinite coordinate"
    xs, ys = values[0::2], values[1::2]
    if xs and (min(xs) < -MARGIN * width or max(xs) > (1 + MARGIN) * width
               or min(ys) < -MARGIN * height or max(ys) > (1 + MARGIN) * height):
        return (f"{what} reach x {min(xs):.6g}..{max(xs):.6g}, y {min(ys):.6g}..{max(ys):.6g}: far outside the "
                f"image (x in 0..{width}, y in 0..{height})")
    return None


def rle_string_counts(counts: str | bytes) -> list[int] | None:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString`` in Python); None if malformed."""
    data = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                return None
            c = data[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return runs


def check_rle(rle: dict, height: int, width: int) -> str | None:
    """A COCO RLE dict: ``size`` equal to the image's (H, W), run lengths that add up to H x W."""
    if "counts" not in rle:
        return f"RLE without 'counts' (keys {quote(sorted(map(str, rle)), 80)})"
    size = rle.get("size", [height, width])
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        return f"RLE 'size' must be [height, width], got {quote(size, 60)}"
    if list(size) != [height, width]:
        return f"RLE size {list(size)} differs from the image's [{height}, {width}]"
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            return "RLE counts must be non-negative integers"
        runs = counts
    elif isinstance(counts, (str, bytes)):
        runs = rle_string_counts(counts)
        if runs is None:
            return f"RLE counts string is garbage: {quote(counts, 60)}"
    else:
        return f"RLE counts must be a string or a list of integers, got {type(counts).__name__}"
    if sum(runs) != height * width:
        return f"RLE runs cover {sum(runs)} pixels, not the image's {height} x {width} = {height * width}"
    return None


def check_segmentation(segmentation: Any, height: int, width: int) -> str | None:
    """A COCO ``segmentation``: empty, polygon parts (or one flat polygon) or an RLE dict; see the module docstring."""
    if segmentation is None or (isinstance(segmentation, (list, tuple)) and len(segmentation) == 0):
        return None
    if isinstance(segmentation, dict):
        return check_rle(segmentation, height, width)
    if not isinstance(segmentation, (list, tuple)):
        return f"segmentation must be polygons (lists of numbers) or an RLE dict, got {quote(segmentation, 60)}"
    parts = segmentation if isinstance(segmentation[0], (list, tuple)) else [segmentation]
    for part in parts:
        problem = check_points(part, height, width)
        if problem:
            return problem
    return None


def check_bbox(bbox: Any, height: int, width: int) -> str | None:
    """A COCO ``bbox`` ``[x, y, w, h]`` (None: absent, taken from the mask): four finite numbers, w, h >= 0."""
    if bbox is None:
        return None
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return f"bbox must be four numbers [x, y, width, height], got {quote(bbox, 60)}"
    x, y, w, h = bbox
    problem = check_points([x, y, x + w, y + h], height, width, what="bbox")
    if problem:
        return problem
    if w < 0 or h < 0:
        return f"bbox {quote(list(bbox), 80)} has a negative width or height"
    return None


def check_coco_structure(images: Any, annotations: Any, categories: Any) -> str | None:
    """The three lists of a COCO file hold mappings whose ids are integers or strings (categories: integers)."""
    for key, items in (("images", images), ("annotations", annotations), ("categories", categories)):
        if not isinstance(items, list):
            return f"'{key}' must be a list, got {quote(items, 80)}"
        bad = next((k for k, item in enumerate(items) if not isinstance(item, dict)), None)
        if bad is not None:
            return f"{key}[{bad}] must be a mapping, got {quote(items[bad], 80)}"
    for key, items, fields, kinds in (("images", images, ("id",), (int, str)),
                                      ("annotations", annotations, ("image_id", "category_id"), (int, str)),
                                      ("categories", categories, ("id",), (int,))):
        for k, item in enumerate(items):
            for name in fields:
                value = item.get(name)
                if not isinstance(value, kinds) or isinstance(value, bool):
                    return f"{key}[{k}] needs an integer '{name}', got {quote(value, 40)}"
    return None
