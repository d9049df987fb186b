"""Datasets a student trains on: ``grounded label`` runs and external COCO, YOLO-seg and mask-PNG folders.

:func:`open_dataset` recognises the layout and returns :class:`DataSplits` (train, validation and test
:class:`View` s; :mod:`grounded.distill.splits`). Every source is lazy: it parses its index once and decodes one image and its masks only when
that item is asked for, so memory stays flat however large the dataset.

Accepted layouts (checked in this order):

- a ``grounded label`` run folder: ``run.json`` (``images_root``) + ``coco/train.json`` [+ ``coco/val.json``],
  and the teacher's soft masks when ``run.json`` names them (:mod:`grounded.distill.soft`; ``info["soft_masks"]``);
- a COCO ``.json`` file, or a folder holding ``annotations.json``, ``_annotations.coco.json`` or a single
  ``*.json``; images relative to the JSON's folder (``file_name`` or ``path``; see
  :class:`grounded.formats.coco.CocoDataset` for the quirks handled);
- a folder with ``train/`` and ``valid/`` (or ``val/``) [+ ``test/``] sub-folders, each one of these (Roboflow);
- a YOLO-seg folder with ``data.yaml`` (``path``, ``train``, ``val``, ``names``); label files ``*.txt`` beside
  ``images`` -> ``labels``, one object per line ``class x1 y1 x2 y2 ...`` normalised to [0, 1] (a 4-number
  line is a box, filled as its mask);
- a mask-PNG folder: ``images/`` and ``masks/`` (same stem, ``.png``, one class index per pixel: 0 background,
  c = class c, 255 ignored) with ``classes.txt`` naming classes 1..K, one per line; or the ``masks/`` export
  of ``grounded label`` (``images/<split>/``, ``annotations/<split>/``, ``labels.txt``).

Validation, before any training: :func:`open_dataset` checks every image and annotation without decoding
pixels or masks. Each image must exist, open (header read: missing, empty, unreadable, over the pixel cap,
a folder ...) and, where the labels state a size (COCO ``width`` / ``height``, mask PNGs), show that size;
every polygon, RLE, box and YOLO line must be well formed and finite, within one image size of the image
(:mod:`grounded.formats.checks`, :func:`grounded.formats.yolo.parse_yolo_line`). Bad images and bad
annotations are left out, counted, and the first few named in a logged warning and in
``DataSplits.info["skipped"]``; ``strict=True`` refuses the dataset instead, naming them. Nothing malformed
reaches a decoder, so no input can make one allocate without bound.

Orientation: images and labels are in display orientation, EXIF applied (the rule of
:mod:`grounded.utils.images`, which every ``grounded label`` export follows).

A label run's ``coco/test.json``, a YOLO ``test`` entry and ``images/test`` mask PNGs are test splits. When a
dataset has no test (validation) split, one is drawn by ``seed``: ``test_fraction`` of the images first, then
``val_fraction`` of the rest (at least one each; :func:`~grounded.distill.splits.seeded_splits`).
Items: ``view.image(i)`` RGB uint8 (H, W, 3); ``view.detections(i)`` ground-truth ``sv.Detections`` with
masks (N, H, W) bool and 0-based ``class_id``; ``view.semantic(i)`` uint8 (H, W), 0 background, c + 1 class c,
255 ignored (instances are rasterised with :func:`grounded.utils.masks.rasterize_semantic`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import supervision as sv

from grounded.distill.instances import label_map_to_detections
from grounded.distill.splits import DataSplits, View, seeded_split, seeded_splits
from grounded.errors import InputError, quote
from grounded.formats.coco import CocoDataset, segmentation_to_mask
from grounded.formats.masks_png import load_mask_png
from grounded.formats.yolo import parse_yolo_line
from grounded.utils.images import IMAGE_EXTENSIONS, find_images, image_size
from grounded.utils.masks import rasterize_semantic

if TYPE_CHECKING:
    from grounded.distill.soft import SoftFiles

logger = logging.getLogger(__name__)

COCO_NAMES = ("annotations.json", "_annotations.coco.json")
NAMED = 5  # problems named in messages and in DataSplits.info


class Source(Protocol):
    class_names: list[str]

    def __len__(self) -> int: ...
    def image_path(self, index: int) -> Path: ...
    def detections(self, index: int) -> sv.Detections: ...
    def semantic(self, index: int) -> np.ndarray: ...
    def check(self, index: int) -> tuple[str | None, list[str]]: ...


@dataclass
class Problems:
    """What validation found: counts, and the first :data:`NAMED` reasons (each names its file)."""

    images: int = 0
    annotations: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, image: str | None, annotations: list[str]) -> None:
        self.images += image is not None
        self.annotations += len(annotations)
        self.examples += ([image] if image else []) + annotations
        del self.examples[NAMED:]

    def __bool__(self) -> bool:
        return bool(self.images or self.annotations)

    def summary(self) -> str:
        return (f"{self.images} image(s) and {self.annotations} annotation(s) are unusable, e.g.\n  "
                + "\n  ".join(self.examples))


def _rasterize(detections: sv.Detections, shape: tuple[int, int]) -> np.ndarray:
    if detections.mask is None or len(detections) == 0:
        return np.zeros(shape, dtype=np.uint8)
    return rasterize_semantic(detections.mask, detections.class_id, shape, detections.confidence)


class CocoSource:
    """A COCO file through the lazy :class:`~grounded.formats.coco.CocoDataset`; malformed annotations skipped."""

    def __init__(self, path: Path, images_root: Path | None = None, soft: SoftFiles | None = None) -> None:
        self.coco = CocoDataset(path, images_root)
        self.class_names = list(self.coco.classes)
        self.soft_files = soft  # a label run's soft masks, by file_name (grounded.distill.soft)

    def soft(self, index: int):  # noqa: ANN201 (SoftMasks | None)
        return self.soft_files(str(self.coco.images[index].get("file_name", ""))) if self.soft_files else None

    def __len__(self) -> int:
        return len(self.coco)

    def image_path(self, index: int) -> Path:
        return self.coco.image_path(index)

    def check(self, index: int) -> tuple[str | None, list[str]]:
        image, annotations = self.coco.check(index)
        return image, [reason for _, reason in annotations]

    def detections(self, index: int) -> sv.Detections:
        return self.coco.detections(index, skip_invalid=True)

    def semantic(self, index: int) -> np.ndarray:
        return _rasterize(self.detections(index), self.coco.image_size(index))


class YoloSegSource:
    """YOLO segmentation labels for a list of images (see the module docstring for the line format)."""

    def __init__(self, images: list[Path], class_names: list[str]) -> None:
        self.images, self.class_names = images, class_names

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> Path:
        return self.images[index]

    def _label_path(self, image: Path) -> Path:
        parts = list(image.parts)
        if "images" in parts:
            parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
        return Path(*parts).with_suffix(".txt")

    def _lines(self, index: int) -> tuple[Path, list[str]]:
        """The label file and its lines; an image without one is a negative (Ultralytics' rule)."""
        label = self._label_path(self.images[index])
        if not label.is_file():
            return label, []
        try:
            return label, label.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"YOLO label file {str(label)!r} cannot be read as text ({exc})") from None

    def check(self, index: int) -> tuple[str | None, list[str]]:
        try:
            image_size(self.images[index])
            label, lines = self._lines(index)
        except InputError as exc:
            return str(exc), []
        problems = []
        for n, line in enumerate(lines, start=1):
            try:
                parse_yolo_line(line, len(self.class_names))
            except InputError as exc:
                problems.append(f"{label}:{n}: {exc}")
        return None, problems

    def detections(self, index: int) -> sv.Detections:
        """Well-formed lines only (malformed ones are counted by :meth:`check`), drawn at the displayed size."""
        height, width = image_size(self.images[index])
        masks, classes = [], []
        for line in self._lines(index)[1]:
            try:
                parsed = parse_yolo_line(line, len(self.class_names))
            except InputError:
                continue
            if parsed is None:
                continue
            cls, xy = parsed
            masks.append(segmentation_to_mask([(xy * (width, height)).ravel().tolist()], height, width))
            classes.append(cls)
        mask = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        return sv.Detections(
            xyxy=sv.mask_to_xyxy(mask).astype(np.float32) if len(mask) else np.zeros((0, 4), np.float32),
            mask=mask,
            class_id=np.asarray(classes, dtype=int),
            data={"class_name": np.array([self.class_names[c] for c in classes], dtype=str)},
        )

    def semantic(self, index: int) -> np.ndarray:
        detections = self.detections(index)
        return _rasterize(detections, detections.mask.shape[1:])


class MaskPngSource:
    """Class-index PNGs beside images; instances are the connected components of each class."""

    def __init__(self, images_dir: Path, masks_dir: Path, class_names: list[str]) -> None:
        self.images = find_images(images_dir)
        self.masks = [masks_dir / p.relative_to(images_dir).with_suffix(".png") for p in self.images]
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> Path:
        return self.images[index]

    def check(self, index: int) -> tuple[str | None, list[str]]:
        mask = self.masks[index]
        if not mask.is_file():
            return f"image {str(self.images[index])!r} has no mask {str(mask)!r}", []
        try:
            shown = image_size(self.images[index])
            size = image_size(mask, f"mask {mask}")
        except InputError as exc:
            return str(exc), []
        if size != shown:
            return (f"mask {str(mask)!r} is {size[0]} x {size[1]} (H x W) but its image shows {shown[0]} x "
                    f"{shown[1]}; they would not align"), []
        return None, []

    def semantic(self, index: int) -> np.ndarray:
        return load_mask_png(self.masks[index])

    def detections(self, index: int) -> sv.Detections:
        return label_map_to_detections(self.semantic(index), self.class_names, min_area=1)


def _mask_png(root: Path) -> tuple[Any, Any | None, Any | None, dict]:
    """``images/`` + ``masks/`` + ``classes.txt``, or the label export's ``images/<split>/`` +
    ``annotations/<split>/`` + ``labels.txt`` (``index name`` lines, 0 = background)."""
    if (root / "labels.txt").is_file():
        rows = [line.split(maxsplit=1) for line in _read_text(root / "labels.txt", "class list").splitlines() if line.strip()]
        names = [row[1].strip() for row in rows if row[0] != "0" and len(row) == 2]
    elif (root / "classes.txt").is_file():
        names = [line.strip() for line in _read_text(root / "classes.txt", "class list").splitlines() if line.strip()]
    else:
        raise InputError(f"mask-PNG dataset {root}: classes.txt (names of classes 1..K, one per line) is missing")
    masks = root / "masks" if (root / "masks").is_dir() else root / "annotations"
    info = {"kind": "mask-png", "path": str(root)}
    if (root / "images" / "train").is_dir() and (masks / "train").is_dir():
        val, test = (MaskPngSource(root / "images" / split, masks / split, names) if (masks / split).is_dir() else None
                     for split in ("val", "test"))
        return MaskPngSource(root / "images" / "train", masks / "train", names), val, test, info
    return MaskPngSource(root / "images", masks, names), None, None, info


def validate(source: Any, problems: Problems) -> list[int]:
    """Check every item of ``source`` (:meth:`Source.check`); return the usable indices, adding to ``problems``."""
    usable = []
    for index in range(len(source)):
        image, annotations = source.check(index)
        problems.add(image, annotations)
        if image is None:
            usable.append(index)
    return usable


def _splits(train: Any, val: Any | None, test: Any | None, fractions: tuple[float, float], seed: int, info: dict,
            strict: bool) -> DataSplits:
    """Validate the sources and make the splits: the dataset's own, or drawn by ``seed`` (``fractions``: val, test)."""
    info = {**info, "path": str(Path(info["path"]).resolve())}  # runs record it; evaluation may run elsewhere
    for name, other in (("validation", val), ("test", test)):
        if other is not None and len(other) and list(other.class_names) != list(train.class_names):
            raise InputError(f"train and {name} classes differ: {train.class_names} vs {other.class_names}")
    problems = Problems()
    usable = validate(train, problems)
    usable_val, usable_test = (validate(s, problems) if s is not None and len(s) else [] for s in (val, test))
    if problems and strict:
        raise InputError(f"dataset {info['path']}: {problems.summary()}\nfix them, or leave strict off "
                         "(grounded train without --strict) to train on the rest")
    if problems:
        logger.warning("dataset %s: skipping what is unusable: %s", info["path"], problems.summary())
    info["skipped"] = {"images": problems.images, "annotations": problems.annotations, "examples": problems.examples}
    if not usable:
        raise InputError(f"dataset {info['path']}: no usable training image"
                         + (f"; {problems.summary()}" if problems else ""))
    val_fraction, test_fraction = fractions
    tr, va, te = seeded_splits(len(usable), None if usable_val else val_fraction, seed,
                               0.0 if usable_test else test_fraction)
    pick = lambda ks: View(train, [usable[k] for k in ks])  # noqa: E731
    info["split"] = "given" if usable_val else f"seeded {seed}"
    info["test_split"] = "given" if usable_test else (f"seeded {seed}, {test_fraction:g} of the images" if te else "none")
    return DataSplits(pick(tr), View(val, usable_val) if usable_val else pick(va), train.class_names, info,
                      View(test, usable_test) if usable_test else pick(te))


def _read_text(path: Path, what: str) -> str:
    """A small UTF-8 text file of a dataset (data.yaml, run.json, classes.txt); InputError naming it otherwise."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r} cannot be read ({exc.strerror or exc})") from None


def _yolo(root: Path) -> tuple[Any, Any | None, Any | None, dict]:
    import yaml

    path = root / "data.yaml"
    try:
        spec = yaml.safe_load(_read_text(path, "YOLO data file")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"YOLO data file {str(path)!r} is not valid YAML: {quote(str(exc))[1:-1]}") from None
    if not isinstance(spec, dict):
        raise InputError(f"YOLO data file {str(path)!r}: expected a mapping (train, val, names), got {quote(spec, 80)}")
    names = spec.get("names")
    if isinstance(names, dict):
        try:
            names = [names[k] for k in sorted(names)]
        except TypeError:
            raise InputError(f"{path}: 'names' keys must be class numbers 0, 1, ...") from None
    names = names if isinstance(names, list) else []
    if not names or not all(isinstance(n, (str, int, float)) for n in names):
        raise InputError(f"{path}: 'names' (the class names) is missing, empty or not a list of names: "
                         f"{quote(spec.get('names'), 80)}")
    for key in ("path", "train", "val"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise InputError(f"{path}: '{key}' must be a folder path, got {quote(spec[key], 80)}")
    base = root / spec.get("path", "")  # Ultralytics: split folders are relative to 'path', itself to data.yaml

    def images(key: str) -> YoloSegSource | None:
        if not spec.get(key):
            return None
        folder = next((f for f in (base / spec[key], root / spec[key]) if f.is_dir()), base / spec[key])
        return YoloSegSource(find_images(folder), [str(n) for n in names])

    train = images("train")
    if train is None or len(train) == 0:
        raise InputError(f"{root / 'data.yaml'}: 'train' names no folder with images")
    return train, images("val"), images("test"), {"kind": "yolo-seg", "path": str(root)}


def _open(root: Path) -> tuple[Any, Any | None, Any | None, dict]:
    """(train source, validation and test sources or None, info) for any layout of the module docstring."""
    if root.is_file() and root.suffix == ".json":
        return CocoSource(root), None, None, {"kind": "coco", "path": str(root)}
    if not root.is_dir():
        raise InputError(f"dataset {str(root)!r} not found: give a label run, a COCO json or a dataset folder")
    if (root / "run.json").is_file():
        try:
            run = json.loads(_read_text(root / "run.json", "label run file"))
        except json.JSONDecodeError as exc:
            raise InputError(f"label run file {str(root / 'run.json')!r} is not valid JSON ({exc}); re-run grounded "
                             "label") from None
        images_root = Path(run.get("images_root", root))
        images_root = images_root if images_root.is_absolute() else (root / images_root)
        if not (root / "coco" / "train.json").is_file():
            raise InputError(f"label run {root} has no coco/train.json: is it finished? (re-run grounded label)")
        from grounded.distill.soft import SoftFiles  # torch: only for runs (dataset checks stay light)

        soft = SoftFiles.of_run(root, run)
        val, test = (CocoSource(root / "coco" / f"{split}.json", images_root, soft)
                     if (root / "coco" / f"{split}.json").is_file() else None for split in ("val", "test"))
        info = {"kind": "label-run", "path": str(root), **({"soft_masks": soft.folder} if soft else {})}
        return CocoSource(root / "coco" / "train.json", images_root, soft), val, test, info
    if (root / "data.yaml").is_file():
        return _yolo(root)
    jsons = [root / n for n in COCO_NAMES if (root / n).is_file()] or sorted(root.glob("*.json"))
    if len(jsons) == 1:
        return CocoSource(jsons[0]), None, None, {"kind": "coco", "path": str(jsons[0])}
    if (root / "images").is_dir() and ((root / "masks").is_dir() or (root / "annotations").is_dir()):
        return _mask_png(root)
    val_dir = next((root / n for n in ("valid", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        test = _open(root / "test")[0] if (root / "test").is_dir() else None
        return _open(root / "train")[0], _open(val_dir)[0], test, {"kind": "folders", "path": str(root)}
    raise InputError(
        f"{root}: not a dataset I can read; expected a label run (run.json), a COCO json ({', '.join(COCO_NAMES)}), "
        "a YOLO-seg data.yaml, images/ + masks/ PNGs, or train/ + valid/ folders"
    )


def open_dataset(path: str | Path, val_fraction: float = 0.2, seed: int = 0, strict: bool = False,
                 test_fraction: float = 0.0) -> DataSplits:
    """Open the dataset at ``path`` (any layout of the module docstring) as train / val / test splits, validated.

    Splits the dataset has are used as given; missing ones are drawn by ``seed``
    (:func:`grounded.distill.splits.seeded_splits`): the test split (``test_fraction`` of the images; 0, the
    default here: none; training passes ``TrainConfig.test_fraction``), then validation.

    ``strict``: refuse the dataset (InputError naming the first problems) if any image or annotation is
    unusable, instead of skipping them; either way ``info["skipped"]`` counts what was left out.
    """
    train, val, test, info = _open(Path(path))
    return _splits(train, val, test, (val_fraction, test_fraction), seed, info, strict)


__all__ = ["DataSplits", "View", "open_dataset", "seeded_split", "seeded_splits", "IMAGE_EXTENSIONS"]
