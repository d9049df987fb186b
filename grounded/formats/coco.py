"""COCO instance annotations: a lazy reader for external files and the encoding rules of our exports.

Reading (``CocoDataset``)::

    ds = CocoDataset("car_parts/train/annotations.json")      # images found below the JSON's folder
    ds.classes                                                  # ['back_bumper', ..., 'wheel'] (18)
    path, detections = ds[0]                                    # masks decoded for this image only
    detections = ds.detections(0, with_masks=False)             # boxes only: cheap

The JSON is parsed once; annotations are grouped per image, and an image's polygons / RLE are decoded into
masks only when that image is asked for, so a large file costs its JSON, never all its masks.

Class ids. COCO category ids are arbitrary (1-based, holes allowed). Classes are the categories sorted by id,
numbered 0, 1, 2, ... (as ``sv.DetectionDataset.from_coco`` does), **except** a background placeholder that no
annotation uses (a category named ``_background_``, ``background`` or ``__background__``, as exported by
COCO Annotator and CVAT): it is dropped, so the real categories stay contiguous. ``ds.category_ids[k]`` is
the COCO id of class ``k``; ``ds.class_id_of(category_id)`` maps back.

Quirks handled: ``iscrowd`` stored as JSON booleans; ``file_name`` that is a bare name while the image lives
in a sub-folder (``path`` field ``JPEGImages/train1.jpg``); absolute ``path`` fields from another machine;
polygons as a flat list or a list of parts; RLE with string or list ``counts``; missing ``bbox`` (taken
from the mask); missing ``width`` / ``height`` (read from the image header).

Writing: :func:`encode_segmentation` gives the COCO rules our exports follow (supervision's ``as_coco``
writes holed or multi-part masks as ``iscrowd=1`` with the box area, which COCO tools then ignore):

- a single-part mask without holes -> polygon, ``iscrowd=0``;
- a mask with holes or several parts -> compressed RLE, ``iscrowd=0``;
- ``area`` = the mask's pixel count; masks are read one at a time (an ``RleMasks`` is never decoded whole);
- an empty mask -> no annotation (``"segmentation": []`` makes pycocotools' ``annToMask`` raise IndexError);
- no masks at all (boxes only) -> the box as a 4-corner polygon, ``area`` = the box area.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from pycocotools import mask as mask_utils

from grounded.errors import InputError, quote
from grounded.formats.checks import check_bbox, check_coco_structure, check_segmentation
from grounded.formats.files import atomic_path
from grounded.formats.polygons import mask_to_polygon
from grounded.utils.images import IMAGE_EXTENSIONS, image_size
from grounded.utils.masks import mask_box, mask_to_rle

logger = logging.getLogger(__name__)

BACKGROUND_NAMES = frozenset({"_background_", "background", "__background__"})


# ------------------------------------------------------------------------------------------- decoding
def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygon parts, flat polygon, or RLE) -> (H, W) bool.

    Polygon parts with fewer than three points are skipped (they enclose nothing); an empty or missing
    segmentation gives an all-False mask. Malformed input (see :mod:`grounded.formats.checks`) is an
    InputError saying what is wrong, found before anything is decoded.
    """
    problem = check_segmentation(segmentation, height, width)
    if problem:
        raise InputError(f"COCO segmentation: {problem}")
    if not segmentation:
        return np.zeros((height, width), dtype=bool)
    if isinstance(segmentation, dict):
        size = segmentation.get("size", [height, width])
        if isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, int(size[0]), int(size[1]))
        else:
            counts = segmentation["counts"]
            rle = {"size": [int(size[0]), int(size[1])], "counts": counts.encode() if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    parts = segmentation if isinstance(segmentation[0], (list, tuple)) else [segmentation]
    parts = [[float(v) for v in part] for part in parts if len(part) >= 6]
    if not parts:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(parts, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class CocoDataset:
    """Lazy, read-only view of a COCO instance-annotation file.

    Args:
        annotations_path: the COCO JSON.
        images_root: folder the images' ``file_name`` is relative to; default the JSON's folder.
        drop_unused_background: drop a background placeholder category that no annotation uses (see the
            module docstring); class ids then cover the real categories only.

    ``ds[i]`` returns ``(image_path: str, sv.Detections)`` with masks, like ``sv.DetectionDataset`` without
    the pixels. Detections: ``xyxy`` float32 (N, 4) XYXY pixels; ``mask`` (N, H, W) bool; ``class_id`` (N,)
    0-based contiguous; ``data["class_name"]``, ``data["iscrowd"]`` (int), ``data["area"]`` (float, as
    stored), ``data["annotation_id"]`` (int). ``confidence`` is None (ground truth).
    """

    def __init__(
        self,
        annotations_path: str | Path,
        images_root: str | Path | None = None,
        drop_unused_background: bool = True,
    ) -> None:
        self.annotations_path = Path(annotations_path)
        if not self.annotations_path.is_file():
            raise InputError(f"COCO file {str(self.annotations_path)!r} not found; give the path of a COCO .json")
        try:
            with open(self.annotations_path, encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"COCO file {str(self.annotations_path)!r} is not valid JSON: {quote(str(exc))[1:-1]}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise InputError(f"COCO file {str(self.annotations_path)!r}: expected a mapping with an 'images' list")
        self.images_root = Path(images_root) if images_root is not None else self.annotations_path.parent
        self.images: list[dict[str, Any]] = data["images"]
        annotations: list[dict[str, Any]] = data.get("annotations") or []
        categories = data.get("categories") or []
        problem = check_coco_structure(self.images, annotations, categories)
        if problem:
            raise InputError(f"COCO file {str(self.annotations_path)!r}: {problem}")
        categories = sorted(categories, key=lambda c: c["id"])

        used = {a.get("category_id") for a in annotations}
        if drop_unused_background:
            dropped = [c for c in categories if str(c.get("name", "")).lower() in BACKGROUND_NAMES and c["id"] not in used]
            if dropped:
                logger.info("%s: dropped unused background category %s", self.annotations_path, [c["name"] for c in dropped])
            categories = [c for c in categories if c not in dropped]
        self.classes: list[str] = [str(c["name"]) for c in categories]
        self.category_ids: list[int] = [int(c["id"]) for c in categories]
        self._class_of_category = {cid: k for k, cid in enumerate(self.category_ids)}
        unknown = sorted(used - set(self._class_of_category), key=str)
        if unknown:
            raise InputError(
                f"COCO file {str(self.annotations_path)!r}: annotations use category ids {unknown[:10]} "
                f"that 'categories' does not define (defined: {self.category_ids[:20]})"
            )

        index_of_image = {}
        for i, image in enumerate(self.images):
            if image.get("id") in index_of_image:
                raise InputError(f"COCO file {str(self.annotations_path)!r}: image id {quote(image.get('id'), 40)} appears twice")
            index_of_image[image.get("id")] = i
        self._by_image: list[list[dict[str, Any]]] = [[] for _ in self.images]
        for ann in annotations:
            i = index_of_image.get(ann.get("image_id"))
            if i is None:
                raise InputError(
                    f"COCO file {str(self.annotations_path)!r}: annotation {quote(ann.get('id'), 40)} refers to "
                    f"image id {ann.get('image_id')!r}, which 'images' does not list"
                )
            self._by_image[i].append(ann)
        self._paths: list[Path | None] = [None] * len(self.images)
        self._basename_index: dict[str, Path | None] | None = None

    # ---------------------------------------------------------------------------------------- sizes
    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[tuple[str, sv.Detections]]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> tuple[str, sv.Detections]:
        return str(self.image_path(index)), self.detections(index)

    def class_id_of(self, category_id: int) -> int:
        """COCO category id -> 0-based class id; KeyError if the category was dropped or is unknown."""
        return self._class_of_category[int(category_id)]

    def num_annotations(self, index: int) -> int:
        return len(self._by_image[index])

    # ---------------------------------------------------------------------------------------- images
    def image_path(self, index: int) -> Path:
        """Where image ``index`` is on disk; InputError listing the places tried if it is nowhere."""
        cached = self._paths[index]
        if cached is not None:
            return cached
        info = self.images[index]
        file_name = str(info.get("file_name", ""))
        tried = []
        for rel in (file_name, str(info.get("path", ""))):
            if rel and not os.path.isabs(rel):
                tried.append(self.images_root / rel)
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            found = self._find_by_basename(Path(file_name or str(info.get("path", ""))).name)
        if found is None:
            raise InputError(
                f"COCO image {file_name!r} (id {info.get('id')}) of {str(self.annotations_path)!r} not found: tried "
                f"{[str(p) for p in tried][:2]} and every file named {Path(file_name).name!r} below "
                f"{str(self.images_root)!r}; put the image there (file_name is relative to that folder) or correct "
                "its file_name"
            )
        self._paths[index] = found
        return found

    def _find_by_basename(self, name: str) -> Path | None:
        """Search ``images_root`` once for image files by base name (used only when the direct paths miss)."""
        if not name:
            return None
        if self._basename_index is None:
            index: dict[str, Path | None] = {}
            for p in sorted(self.images_root.rglob("*")):
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                    index[p.name] = None if p.name in index else p  # ambiguous names resolve to nothing
            self._basename_index = index
        return self._basename_index.get(name)

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index``, from the JSON, else from the image header (EXIF orientation
        applied: the displayed size, see :mod:`grounded.utils.images`)."""
        info = self.images[index]
        if _is_size(info.get("height")) and _is_size(info.get("width")):
            return int(info["height"]), int(info["width"])
        return image_size(self.image_path(index))

    def check(self, index: int) -> tuple[str | None, list[tuple[int, str]]]:
        """Validate image ``index`` without decoding pixels or masks: (what is wrong with the image or None,
        [(annotation position, what is wrong)]). The image must exist and open, and its displayed size
        must equal the JSON's; each annotation's box and segmentation must pass :mod:`grounded.formats.checks`.
        """
        info = self.images[index]
        try:
            shown = image_size(self.image_path(index))
        except InputError as exc:
            return str(exc), []
        if _is_size(info.get("height")) and _is_size(info.get("width")):
            given = (int(info["height"]), int(info["width"]))
            if given != shown:
                rotated = " (its EXIF orientation turns it: annotate the upright image)" if given == shown[::-1] else ""
                return (f"COCO image {str(info.get('file_name'))!r} is {shown[0]} x {shown[1]} (H x W) as displayed"
                        f"{rotated}, but the JSON says {given[0]} x {given[1]}; its annotations would not align"), []
        elif info.get("height") is not None or info.get("width") is not None:
            return f"COCO image {str(info.get('file_name'))!r}: width / height must be positive integers", []
        problems = []
        for k, ann in enumerate(self._by_image[index]):
            problem = self._check_annotation(ann, *shown)
            if problem:
                problems.append((k, f"annotation {quote(ann.get('id'), 40)} of {str(info.get('file_name'))!r}: {problem}"))
        return None, problems

    @staticmethod
    def _check_annotation(ann: Any, height: int, width: int) -> str | None:
        if not isinstance(ann, dict):
            return f"expected a mapping, got {quote(ann, 60)}"
        return check_bbox(ann.get("bbox"), height, width) or check_segmentation(ann.get("segmentation"), height, width)

    # ------------------------------------------------------------------------------------ annotations
    def detections(self, index: int, with_masks: bool = True, skip_invalid: bool = False) -> sv.Detections:
        """Ground truth of image ``index`` as ``sv.Detections`` (see the class docstring).

        A malformed annotation is an InputError, or, with ``skip_invalid``, left out (see :meth:`check`).
        """
        height, width = self.image_size(index)
        anns = []
        for a in self._by_image[index]:
            problem = self._check_annotation(a, height, width)
            if problem and not skip_invalid:
                raise InputError(f"COCO annotation {quote(a.get('id'), 40)} of {str(self.images[index].get('file_name'))!r}: "
                                 f"{problem}")
            if not problem:
                anns.append(a)
        if not anns:
            empty = sv.Detections.empty()
            if with_masks:
                empty.mask = np.zeros((0, height, width), dtype=bool)
            empty.class_id = np.zeros(0, dtype=int)
            empty.data = {"class_name": np.array([], dtype=str), "iscrowd": np.zeros(0, dtype=int),
                          "area": np.zeros(0, dtype=float), "annotation_id": np.zeros(0, dtype=int)}
            return empty
        masks = [segmentation_to_mask(a.get("segmentation"), height, width) for a in anns] if with_masks else None
        boxes = []
        for k, a in enumerate(anns):
            bbox = a.get("bbox")
            if bbox is not None and len(bbox) == 4:
                x, y, w, h = (float(v) for v in bbox)
                boxes.append([x, y, x + w, y + h])
            else:
                mask = masks[k] if masks is not None else segmentation_to_mask(a.get("segmentation"), height, width)
                boxes.append(mask_box(mask))
        class_id = np.array([self.class_id_of(a["category_id"]) for a in anns], dtype=int)
        return sv.Detections(
            xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            mask=np.stack(masks) if masks is not None else None,
            class_id=class_id,
            data={
                "class_name": np.array([self.classes[c] for c in class_id]),
                "iscrowd": np.array([int(bool(a.get("iscrowd", 0))) for a in anns], dtype=int),
                "area": np.array([float(a.get("area", 0.0)) for a in anns], dtype=float),
                "annotation_id": np.array([int(a.get("id", -1)) for a in anns], dtype=int),
            },
        )


# ------------------------------------------------------------------------------------------- encoding
def encode_segmentation(mask: np.ndarray) -> tuple[list[list[float]] | dict, int]:
    """(H, W) bool -> (COCO ``segmentation``, area in pixels); always an ``iscrowd=0`` object.

    One part without holes -> ``[polygon]`` traced along pixel edges (rasterises back to the same pixels in
    ``pycocotools``); holes or several parts -> compressed RLE (polygons cannot hold holes). An empty mask
    gives ``[]`` and area 0 (no annotation may carry it).
    """
    area = int(np.count_nonzero(mask))
    if area == 0:
        return [], 0
    polygon = mask_to_polygon(mask)
    if polygon is not None:
        return [polygon], area
    return mask_to_rle(mask), area


def classes_to_categories(classes: list[str]) -> list[dict[str, Any]]:
    """Class names (ontology order) -> COCO categories; category id = class id + 1, as supervision writes."""
    return [{"id": k + 1, "name": name, "supercategory": "object"} for k, name in enumerate(classes)]


def detections_to_annotations(
    detections: sv.Detections, image_id: int, first_annotation_id: int, height: int, width: int,
    masks: Sequence[np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """One image's detections -> COCO annotation dicts (see the module docstring for the rules).

    ``bbox`` is the detection box (XYXY pixels -> XYWH), clipped to the image, rounded to 0.01 px; ``score``
    is the confidence when there is one (ignored by COCO tools reading ground truth). ``masks``: N (H, W) bool
    masks, default ``detections.mask``. An empty mask gets no annotation; ids count on without gaps.
    """
    masks = detections.mask if masks is None else masks
    annotations = []
    for k in range(len(detections)):
        x0, y0, x1, y1 = (float(v) for v in detections.xyxy[k])
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        bbox = [round(x0, 2), round(y0, 2), round(max(x1 - x0, 0.0), 2), round(max(y1 - y0, 0.0), 2)]
        if masks is not None:
            segmentation, area = encode_segmentation(masks[k])
            if area == 0:
                continue
        else:
            segmentation = [[round(v, 2) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]]
            area = round(bbox[2] * bbox[3], 2)
        ann = {
            "id": first_annotation_id + len(annotations),
            "image_id": image_id,
            "category_id": int(detections.class_id[k]) + 1,
            "bbox": bbox,
            "area": area,
            "segmentation": segmentation,
            "iscrowd": 0,
        }
        if detections.confidence is not None:
            ann["score"] = round(float(detections.confidence[k]), 4)
        annotations.append(ann)
    return annotations


class CocoWriter:
    """Write a COCO file one image at a time, holding no masks: annotations stream to a side file.

    ``close()`` assembles ``{"info", "licenses", "categories", "images", "annotations"}`` into a temporary
    file and renames it over ``path`` (atomic); leaving the ``with`` block on an exception writes nothing.
    Output is deterministic: sorted keys, no dates. Image and annotation ids count from 1 in call order.
    """

    def __init__(self, path: str | Path, classes: list[str], description: str = "grounded") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.description = description
        self._images: list[dict[str, Any]] = []
        self._next_annotation_id = 1
        self._side_path = self.path.with_name(self.path.name + ".annotations.tmp")
        self._side = open(self._side_path, "w", encoding="utf-8")

    def add(self, file_name: str, height: int, width: int, detections: sv.Detections,
            masks: Sequence[np.ndarray] | None = None) -> int:
        """Add one image (``file_name`` relative to the images root), its detections and ``masks`` (default
        ``detections.mask``; see :func:`detections_to_annotations`); return its id."""
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "file_name": file_name, "height": int(height), "width": int(width)})
        for ann in detections_to_annotations(detections, image_id, self._next_annotation_id, height, width, masks):
            self._side.write(("," if self._next_annotation_id > 1 else "") + json.dumps(ann, sort_keys=True))
            self._next_annotation_id += 1
        return image_id

    def close(self) -> None:
        self._side.close()
        head = {
            "info": {"description": self.description},
            "licenses": [],
            "categories": classes_to_categories(self.classes),
            "images": self._images,
        }
        with (atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as out,
              open(self._side_path, encoding="utf-8") as side):
            text = json.dumps(head, sort_keys=True)
            out.write(text[:-1] + ',"annotations":[')
            for chunk in iter(lambda: side.read(1 << 20), ""):
                out.write(chunk)
            out.write("]}")
        self._side_path.unlink()

    def abort(self) -> None:
        self._side.close()
        self._side_path.unlink(missing_ok=True)

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
