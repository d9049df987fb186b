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
        edges.extend(zip((xs + sx).tolist(), (ys + sy).tolist(), (xs + ex).tolist(), (ys + ey).tolist()))
    return edges


def _signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_boundaries(mask: np.ndarray) -> list[np.ndarray]:
    """Every boundary loop of a (H, W) bool mask, as (K, 2) int arrays of corner vertices (X, Y).

    Collinear vertices are removed. Outlines of parts have positive :func:`loop_area`, holes negative.
    Loops are ordered by their first vertex (deterministic).
    """
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
                    left = (cur[0] + dy, cur[1] - dx)
                    nxt = left if left in options else options[0]
                    options.remove(nxt)
                prev, cur = cur, nxt
            loops.append(_drop_collinear(np.asarray(loop, dtype=np.int64)))
    return loops


def _drop_collinear(loop: np.ndarray) -> np.ndarray:
    prev = np.roll(loop, 1, axis=0)
    nxt = np.roll(loop, -1, axis=0)
    cross = (loop[:, 0] - prev[:, 0]) * (nxt[:, 1] - loop[:, 1]) - (loop[:, 1] - prev[:, 1]) * (nxt[:, 0] - loop[:, 0])
    return loop[cross != 0]


def loop_area(loop: np.ndarray) -> float:
    """Signed area in pixels: positive for a part's outline, negative for a hole (screen coordinates)."""
    return -_signed_area(loop)


def count_parts_and_holes(mask: np.ndarray) -> tuple[int, int]:
    """(parts, holes) of a (H, W) bool mask: parts 4-connected, holes 8-connected background regions."""
    areas = [loop_area(loop) for loop in mask_boundaries(mask)]
    return sum(a > 0 for a in areas), sum(a < 0 for a in areas)


def mask_to_polygon(mask: np.ndarray) -> list[float] | None:
    """The outline of a single-part, hole-free mask as a flat COCO polygon ``[x0, y0, x1, y1, ...]``.

    Returns None unless the mask has exactly one part and no hole (those need RLE or several polygons).
    """
    loops = mask_boundaries(mask)
    if len(loops) != 1 or loop_area(loops[0]) <= 0:
        return None
    return [float(v) for v in loops[0].reshape(-1)]


def outer_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of the mask's parts (holes ignored), largest area first: (K, 2) int XY corner vertices."""
    parts = [loop for loop in mask_boundaries(mask) if loop_area(loop) > 0]
    return sorted(parts, key=lambda loop: -loop_area(loop))
