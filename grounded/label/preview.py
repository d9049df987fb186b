"""A preview grid PNG: a seeded sample of labelled images drawn with supervision's annotators."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image

from grounded.formats.files import atomic_write_bytes
from grounded.label.records import read_record, record_to_detections
from grounded.utils.images import load_image

PREVIEW_FILE = "preview.png"


def _fit(image: np.ndarray, detections: sv.Detections, size: int) -> tuple[np.ndarray, sv.Detections]:
    """Scale the image (up or down) to fit ``size`` and its detections with it (nearest-pixel masks)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    rows = np.minimum((np.arange(new_h) / scale).astype(int), height - 1)
    cols = np.minimum((np.arange(new_w) / scale).astype(int), width - 1)
    scaled = sv.Detections(
        xyxy=detections.xyxy * scale,
        mask=detections.mask[:, rows][:, :, cols] if detections.mask is not None else None,
        confidence=detections.confidence,
        class_id=detections.class_id,
        data=detections.data,
    )
    return image, scaled


def _tile(image: np.ndarray, detections: sv.Detections, size: int) -> np.ndarray:
    """Scale into a (size, size, 3) tile, then draw masks, boxes and 'class 0.87' labels."""
    image, detections = _fit(image, detections, size)
    if len(detections):
        labels = [f"{name} {conf:.2f}" for name, conf in zip(detections.data["class_name"], detections.confidence, strict=True)]
        image = sv.MaskAnnotator(opacity=0.45).annotate(image.copy(), detections)
        image = sv.BoxAnnotator(thickness=2).annotate(image, detections)
        image = sv.LabelAnnotator(text_scale=0.4, text_padding=3).annotate(image, detections, labels=labels)
    tile = np.full((size, size, 3), 32, dtype=np.uint8)
    y, x = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    tile[y : y + image.shape[0], x : x + image.shape[1]] = image
    return tile


def write_preview(
    out: Path, images_root: Path, relatives: list[str], count: int = 16, seed: int = 0, tile: int = 256
) -> Path | None:
    """Draw up to ``count`` images (those with detections first, in a seeded order) into OUT/preview.png.

    Reads only the sampled images and their records; returns None if no image is labelled.
    """
    order = [relatives[i] for i in np.random.default_rng(seed).permutation(len(relatives))]
    chosen: list[tuple[str, dict]] = []
    negatives: list[tuple[str, dict]] = []
    for rel in order:
        record = read_record(out, rel)
        if record is None or "error" in record:
            continue
        (chosen if record["detections"] else negatives).append((rel, record))
        if len(chosen) >= count:
            break
    chosen = (chosen + negatives)[:count]
    if not chosen:
        return None
    tiles = [_tile(load_image(images_root / rel), record_to_detections(rec), tile) for rel, rec in chosen]
    columns = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / columns))
    grid = np.full((rows * tile, columns * tile, 3), 16, dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = t
    buffer = io.BytesIO()
    Image.fromarray(grid).save(buffer, format="PNG")
    path = Path(out) / PREVIEW_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path

