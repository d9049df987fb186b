"""Label Studio tasks with pre-annotations: ``tasks.json`` + ``label_config.xml`` (``--format label-studio``).

Each labelled image becomes one task whose ``predictions`` hold its detections, so Label Studio shows them
as editable pre-annotations::

    {"data": {"image": "/data/local-files/?d=sub/a.jpg"},
     "predictions": [{"model_version": "grounded", "score": 0.71, "result": [
        {"id": "d0", "type": "polygonlabels", "from_name": "polygon", "to_name": "image",
         "original_width": 640, "original_height": 480, "image_rotation": 0, "score": 0.83,
         "value": {"points": [[x%, y%], ...], "closed": true, "polygonlabels": ["car"]}},
        {"id": "d1", "type": "brushlabels", "from_name": "brush", ...,
         "value": {"format": "rle", "rle": [0, 4, 176, ...], "brushlabels": ["wheel"]}}]}]}

A mask of one part without holes is a polygon (points in percent of the image size, on pixel corners, so
it covers exactly the mask's pixels); a mask with holes or several parts is a brush mask, whose ``rle`` is
Label Studio's own run-length bit stream (thi.ng ``rle-pack``, as ``label_studio_sdk.converter.brush``
writes and reads it), not COCO RLE: see :func:`mask_to_brush_rle`. ``label_config.xml`` is the labelling
interface that matches (``Image`` named ``image``, ``PolygonLabels`` and ``BrushLabels`` with the classes).

Images are named ``/data/local-files/?d=<path relative to the images root>``: start Label Studio with
``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<images root>``
(or change the prefix with ``image_prefix``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
import supervision as sv

from grounded.formats.files import atomic_write_text, commit_file
from grounded.formats.polygons import mask_to_polygon

IMAGE_PREFIX = "/data/local-files/?d="
TASKS_FILE = "tasks.json"
CONFIG_FILE = "label_config.xml"
RLE_SIZES = (3, 4, 8, 16)  # the run-length field widths label-studio-sdk's encoder uses


# ------------------------------------------------------------------------------------------- brush RLE
def encode_brush_rle(values: np.ndarray, word_size: int = 8) -> list[int]:
    """Label Studio's brush RLE of a flat uint8 array (``label_studio_sdk.converter.brush.encode_rle``).

    Bit stream: 32 bits value count, 5 bits word size - 1, four 4-bit run-length widths - 1; then per run
    a flag bit (1: one value repeated), a 2-bit index into the widths, the run length - 1, the value. Runs
    of one value are written as flag 0 (a literal of length 1). Padded with zero bits to whole bytes (a
    whole zero byte when already aligned, as the SDK does). Byte-identical to the SDK's output.
    """
    values = np.asarray(values).ravel()
    return _pack_runs(len(values), *_runs(values), word_size=word_size)


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, values) of the runs of equal values in a flat array."""
    if not len(values):
        return np.zeros(0, dtype=np.int64), values[:0]
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), len(values) - 1)
    return np.diff(np.append(-1, ends)), values[ends]


def _pack_runs(count: int, lengths: np.ndarray, values: np.ndarray, word_size: int = 8) -> list[int]:
    """The bit stream of :func:`encode_brush_rle` from ``count`` values given as runs."""
    bits = [f"{count:032b}", f"{word_size - 1:05b}", "".join(f"{s - 1:04b}" for s in RLE_SIZES)]
    for length, value in zip(lengths.tolist(), values.tolist(), strict=True):
        word = f"{value:0{word_size}b}"
        if length == 1:
            bits.append("000000" + word)
            continue
        while length > 2**16:
            bits.append("111" + f"{2**16 - 1:016b}" + word)
            length -= 2**16
        index = next(k for k, size in enumerate(RLE_SIZES) if length <= 2**size)
        bits.append(f"1{index:02b}{length - 1:0{RLE_SIZES[index]}b}" + word)
    stream = "".join(bits)
    stream += "0" * (8 - len(stream) % 8)
    return [int(stream[i : i + 8], 2) for i in range(0, len(stream), 8)]


def decode_brush_rle(rle: list[int] | bytes) -> np.ndarray:
    """Inverse of :func:`encode_brush_rle` (``label_studio_sdk.converter.brush.decode_rle``): flat uint8 array."""
    bits = np.unpackbits(np.asarray(bytearray(rle), dtype=np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        chunk = bits[pos : pos + n]
        pos += n
        return int("".join(map(str, chunk.tolist())) or "0", 2)

    num, word_size = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeat:
            out[i:j] = read(word_size)
            i = j
        else:
            while i < j:
                out[i] = read(word_size)
                i += 1
    return out


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """(H, W) bool mask -> brush RLE of its RGBA layer (255 where the mask is), as Label Studio stores brushes.

    Equal to ``encode_brush_rle`` of the 4 x H x W RGBA values, computed from the mask's own runs (each
    four times as long) without building the RGBA layer.
    """
    lengths, values = _runs(np.asarray(mask, dtype=bool).ravel())
    return _pack_runs(4 * mask.size, 4 * lengths, values.astype(np.uint8) * 255)


def brush_rle_to_mask(rle: list[int] | bytes, height: int, width: int) -> np.ndarray:
    """Brush RLE -> (H, W) bool mask (the alpha channel, as ``decode_from_annotation`` reads it)."""
    return decode_brush_rle(rle).reshape(height, width, 4)[:, :, 3] > 0


# ------------------------------------------------------------------------------------------- tasks
def detection_results(detections: sv.Detections, height: int, width: int,
                      masks: Sequence[np.ndarray] | None = None) -> list[dict[str, Any]]:
    """One image's detections -> Label Studio result dicts (polygon, else brush); empty masks are left out.

    ``masks``: N (H, W) bool masks read one at a time (default ``detections.mask``, required one way or the
    other).
    """
    masks = detections.mask if masks is None else masks
    names = detections.data.get("class_name")
    results = []
    for k in range(len(detections)):
        mask = masks[k]
        if not mask.any():
            continue
        label = str(names[k])
        common = {"id": f"d{k}", "to_name": "image", "original_width": int(width), "original_height": int(height),
                  "image_rotation": 0}
        if detections.confidence is not None:
            common["score"] = round(float(detections.confidence[k]), 5)
        polygon = mask_to_polygon(mask)
        if polygon is not None:
            points = [[round(x / width * 100.0, 4), round(y / height * 100.0, 4)] for x, y in zip(polygon[::2], polygon[1::2], strict=True)]
            value = {"points": points, "closed": True, "polygonlabels": [label]}
            results.append({**common, "type": "polygonlabels", "from_name": "polygon", "value": value})
        else:
            value = {"format": "rle", "rle": mask_to_brush_rle(mask), "brushlabels": [label]}
            results.append({**common, "type": "brushlabels", "from_name": "brush", "value": value})
    return results


def label_config(classes: list[str]) -> str:
    """The Label Studio labelling interface for these tasks: one image, polygon and brush labels per class."""
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in classes)
    return ("<View>\n  <Image name=\"image\" value=\"$image\"/>\n"
            f"  <PolygonLabels name=\"polygon\" toName=\"image\">\n{labels}  </PolygonLabels>\n"
            f"  <BrushLabels name=\"brush\" toName=\"image\">\n{labels}  </BrushLabels>\n</View>\n")


class LabelStudioWriter:
    """Streams tasks image by image (``add``) into ``tasks.json``; ``close`` finishes it and writes ``label_config.xml``.

    ``add`` takes any object with ``relative``, ``height``, ``width``, ``detections`` and ``masks`` (N (H, W)
    bool masks read one at a time, or None for ``detections.mask``), as ``grounded.label.export`` hands its
    images to every writer. Each task is written as soon as it is added (memory stays flat); the file
    appears under its name only when complete (temporary file + rename).
    """

    def __init__(self, root: str | Path, classes: list[str], splits: list[str] | None = None, copy: bool = False,
                 image_prefix: str = IMAGE_PREFIX) -> None:
        self.root, self.classes, self.image_prefix = Path(root), classes, image_prefix
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / f".{TASKS_FILE}.tmp"
        self._file = open(self._tmp, "w", encoding="utf-8")
        self._count = 0

    def add(self, image: Any) -> None:
        results = detection_results(image.detections, image.height, image.width, image.masks)
        scores = [r["score"] for r in results if "score" in r]
        prediction = {"model_version": "grounded", "score": round(float(np.mean(scores)), 5) if scores else 0.0,
                      "result": results}
        task = {"data": {"image": self.image_prefix + quote(image.relative)}, "predictions": [prediction]}
        self._file.write(("[\n" if self._count == 0 else ",\n") + json.dumps(task))
        self._count += 1

    def close(self) -> None:
        self._file.write("[]\n" if self._count == 0 else "\n]\n")
        self._file.close()
        commit_file(self._tmp, self.root / TASKS_FILE)  # fsync, then rename
        atomic_write_text(self.root / CONFIG_FILE, label_config(self.classes))
