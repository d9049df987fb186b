"""Exact mask outlines: trace the pixel-edge boundaries of a bool mask as closed polygons.

Vertices lie on pixel corners (integer coordinates, XY pixels, the image's top-left corner is (0, 0)), so a
polygon rasterised with ``pycocotools`` gives back exactly the mask's pixels. No OpenCV is needed.

Connectivity follows the usual pairing: foreground pixels are connected through their 4 sides, background
pixels through their 8 neighbours. Each traced loop is then either the outline of one foreground part
(counter-clockwise on screen, positive area) or of one hole (clockwise, negative area), so the loops also
count a mask's parts and holes.
"""

from __future__ import annotations

import numpy as np


def _directed_edges(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Unit boundary edges (x0, y0, x1, y1), each with the foreground on its left (y points down)."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    edges: list[tuple[int, int, int, int]] = []
    # (neighbour offset, start corner, end corner) for the four sides of a pixel at (x, y)
    sides = (
        ((-1, 0), (1, 0), (0, 0)),  # top: background above, walk right-to-left
        ((0, -1), (0, 0), (0, 1)),  # left: background left, walk down
        ((1, 0), (0, 1), (1, 1)),  # bottom: background below, walk left-to-right
        ((0, 1), (1, 1), (1, 0)),  # right: background right, walk up
    )
    h, w = inner.shape
    for (dy, dx), (sx, sy), (ex, ey) in sides:
        neighbour = m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        ys, xs = np.nonzero(inner & ~neighbour)
        edges.extend(zip((xs + sx).tolist(), (ys + sy).tolist(), (xs + ex).tolist(), (ys + ey).tolist(), strict=True))
    return edges


def _crop(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The mask cut to its bounding box, and the box's (x0, y0); outlines and counts do not change."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return mask[:0, :0], 0, 0
    y0, x0 = int(rows[0]), int(cols[0])
    return mask[y0 : rows[-1] + 1, x0 : cols[-1] + 1], x0, y0


def _signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_boundaries(mask: np.ndarray) -> list[np.ndarray]:
    """Every boundary loop of a (H, W) bool mask, as (K, 2) int arrays of corner vertices (X, Y).

    Collinear vertices are removed. Outlines of parts have positive :func:`loop_area`, holes negative.
    Loops are ordered by their first vertex (deterministic).
    """
    mask, offset_x, offset_y = _crop(mask)
    edges = _directed_edges(mask)
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for x0, y0, x1, y1 in edges:
        outgoing.setdefault((x0, y0), []).append((x1, y1))
    loops = []
    for start in sorted(outgoing):
        while outgoing.get(start):
            loop = [start]
            prev, cur = start, outgoing[start].pop()
            while cur != start:
                loop.append(cur)
                options = outgoing[cur]
                if len(options) == 1:
                    nxt = options.pop()
                else:  # a pinch: two parts touch at a corner; turn left to hug the same pixel
                    dx, dy = cur[0] - prev[0], cur[1] - prev[1]
                    turn_left = (cur[0] + dy, cur[1] - dx)
                    nxt = turn_left if turn_left in options else options[0]
                    options.remove(nxt)
                prev, cur = cur, nxt
            loops.append(_drop_collinear(np.asarray(loop, dtype=np.int64)) + np.array([offset_x, offset_y]))
    return loops


def _drop_collinear(loop: np.ndarray) -> np.ndarray:
    prev = np.roll(loop, 1, axis=0)
    nxt = np.roll(loop, -1, axis=0)
    cross = (loop[:, 0] - prev[:, 0]) * (nxt[:, 1] - loop[:, 1]) - (loop[:, 1] - prev[:, 1]) * (nxt[:, 0] - loop[:, 0])
    return loop[cross != 0]


def loop_area(loop: np.ndarray) -> float:
    """Signed area in pixels: positive for a part's outline, negative for a hole (screen coordinates)."""
    return -_signed_area(loop)


def _label(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray] | None:
    """OpenCV connected components (count includes label 0), or None where OpenCV is not installed.

    ``mask`` must have at least one pixel: OpenCV 5 asserts ``!img.empty()`` where 4.x returned.
    """
    try:
        import cv2
    except ImportError:  # opencv-python-headless is a dependency; tracing still works without it
        return None
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)


def count_parts_and_holes(mask: np.ndarray) -> tuple[int, int]:
    """(parts, holes) of a (H, W) bool mask: parts 4-connected, holes 8-connected background regions.

    Uses OpenCV's connected components (fast on noisy masks), else counts the traced loops. A mask with no
    foreground pixel (or no pixel at all, e.g. shape (0, W)) has (0, 0).
    """
    mask = _crop(mask.astype(bool))[0]
    if mask.size == 0:  # nothing to label; OpenCV 5 rejects an empty image
        return 0, 0
    parts = _label(mask, 4)
    if parts is not None:
        background = _label(np.pad(~mask, 1, constant_values=True), 8)
        return parts[0] - 1, background[0] - 2
    areas = [loop_area(loop) for loop in mask_boundaries(mask)]
    return sum(a > 0 for a in areas), sum(a < 0 for a in areas)


def mask_to_polygon(mask: np.ndarray) -> list[float] | None:
    """The outline of a single-part, hole-free mask as a flat COCO polygon ``[x0, y0, x1, y1, ...]``.

    Returns None unless the mask has exactly one part and no hole (those need RLE or several polygons).
    """
    if count_parts_and_holes(mask) != (1, 0):
        return None
    loops = mask_boundaries(mask)
    return [float(v) for v in loops[0].reshape(-1)]


def _nearest_pair(a: np.ndarray, b: np.ndarray, most: int = 256) -> tuple[int, int]:
    """Indices (i, j) of a near-closest vertex pair a[i], b[j], searching at most ``most`` of each."""
    ia = np.arange(0, len(a), max(1, len(a) // most))
    ib = np.arange(0, len(b), max(1, len(b) // most))
    d = ((a[ia, None, :].astype(np.float64) - b[None, ib, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(ia[i]), int(ib[j])


def bridge_outlines(outlines: list[np.ndarray]) -> np.ndarray:
    """Join several outlines into one polygon with zero-width bridges, as Ultralytics does for YOLO segments.

    Every other part is bridged from (near) its closest vertex to the nearest vertex of the first (largest)
    outline: the polygon walks the first outline, and at a bridge vertex goes to the part, around it and
    back. Filled, it covers every part plus the bridge lines. (K_i, 2) arrays in, one (M, 2) array out;
    linear in the vertices (the nearest-vertex search looks at most at 256 vertices of each outline).
    """
    root = outlines[0]
    children: dict[int, list[np.ndarray]] = {}
    for part in outlines[1:]:
        i, j = _nearest_pair(root, part)
        children.setdefault(i, []).append(np.concatenate([part[j:], part[: j + 1]]))
    pieces = []
    for i in range(len(root)):
        pieces.append(root[i : i + 1])
        for around in children.get(i, []):
            pieces += [around, root[i : i + 1]]
    return np.concatenate(pieces)
