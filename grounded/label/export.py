"""Build the exports of a labelling run from its records, one image at a time (no masks held).

Formats and layouts (``OUT/<format>/``); every image-relative path is relative to ``images_root``::

    coco/train.json, coco/val.json[, coco/test.json]     file_name = path relative to images_root
    yolo/data.yaml, yolo/images/<split>/, yolo/labels/<split>/          (boxes)
    yolo-seg/data.yaml, yolo-seg/images/<split>/, yolo-seg/labels/<split>/   (polygons)
    voc/JPEGImages/, voc/Annotations/, voc/ImageSets/Main/<split>.txt
    masks/labels.txt, masks/images/<split>/, masks/annotations/<split>/<stem>.png   (class-index PNGs)
    label-studio/tasks.json, label-studio/label_config.xml   (pre-annotations: grounded/formats/label_studio.py)

Images in the YOLO, VOC and mask folders are symbolic links to the originals (``copy_images=True`` copies),
named flat by :func:`grounded.formats.files.flat_name`: the relative path, extension included, percent-escaped,
plus the extension (``a.jpg`` -> ``a.jpg.jpg``, ``sub/a.jpg`` -> ``sub%2Fa.jpg.jpg``), so no two images share
a name or a label stem in any format. Each format is built in a hidden staging folder and swapped in when
complete, so an interrupted export (a crash, a full disk) leaves the previous one and every record intact
and no stale files remain; a full disk is reported as :class:`grounded.errors.DiskFullError` saying what
was being written. Images that could not be read are left out of every export and listed in
``OUT/errors.json``. A detection whose mask is empty (0 pixels) is left out of every format alike (COCO has
no form for it) and counted in ``DatasetStats.dropped_empty_masks``.

Masks stay COCO RLE (:class:`grounded.utils.masks.RleMasks`) and each writer decodes them one at a time,
so an image's full-size masks are never decoded together.

Adding a format: a class with ``add(image: _Image)`` and ``close()`` (see :class:`_Folders`), registered in
``_WRITERS`` under the name given to ``formats``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import supervision as sv
from tqdm.auto import tqdm

from grounded.errors import InputError
from grounded.formats.coco import CocoWriter
from grounded.formats.files import atomic_write_text, disk_full_guard, export_names, link_image
from grounded.formats.label_studio import LabelStudioWriter
from grounded.formats.masks_png import save_labels_txt, save_mask_png
from grounded.formats.voc import save_voc
from grounded.formats.yolo import save_data_yaml, save_yolo_labels
from grounded.label.manifest import read_manifest, run_lock
from grounded.label.records import image_relatives, read_record, record_to_detections
from grounded.label.reviews import reviewed_record
from grounded.label.splits import assign_splits
from grounded.utils.masks import RleMasks

FORMATS = ("coco", "yolo", "yolo-seg", "voc", "masks", "label-studio")
ERRORS_FILE = "errors.json"


@dataclass
class DatasetStats:
    """What the exported dataset holds (counted while exporting)."""

    images: int = 0  # images found below the images root
    labelled: int = 0  # with a finished record (negatives included)
    missing: int = 0  # no record yet: the run has not reached them
    empty: int = 0  # labelled, no detection (kept as negatives)
    instances: dict[str, int] = field(default_factory=dict)  # per class name, ontology order
    splits: dict[str, int] = field(default_factory=dict)  # labelled images per split
    errors: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}
    dropped_empty_masks: int = 0  # detections left out of every format: their mask has no pixel


class _Image:
    """One labelled image as the writers see it: ``detections`` without masks, ``masks`` kept as RLE (or None
    for a record without masks) and decoded one at a time by whoever reads them."""

    def __init__(self, relative: str, name: str, split: str, source: Path, record: dict, detections: sv.Detections,
                 masks: RleMasks | None):
        self.relative, self.name, self.split, self.source = relative, name, split, source
        self.height, self.width, self.detections, self.masks = record["height"], record["width"], detections, masks

    @property
    def stem(self) -> str:
        return Path(self.name).stem


class _Coco:
    def __init__(self, root: Path, classes: list[str], splits: list[str], copy: bool) -> None:
        self.writers = {s: CocoWriter(root / f"{s}.json", classes, description="grounded label") for s in splits}

    def add(self, image: _Image) -> None:
        self.writers[image.split].add(image.relative, image.height, image.width, image.detections, image.masks)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class _Folders:
    """Shared by the folder formats: link the image into ``images/<split>/`` and write its label file."""

    def __init__(self, root: Path, classes: list[str], splits: list[str], copy: bool) -> None:
        self.root, self.classes, self.splits, self.copy = root, classes, splits, copy

    def add(self, image: _Image) -> None:
        link_image(image.source, self.root / "images" / image.split / image.name, self.copy)
        self.write_label(image)

    def write_label(self, image: _Image) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Yolo(_Folders):
    segmentation = False

    def write_label(self, image: _Image) -> None:
        path = self.root / "labels" / image.split / f"{image.stem}.txt"
        save_yolo_labels(path, image.detections, image.height, image.width, self.segmentation, image.masks)

    def close(self) -> None:
        save_data_yaml(self.root / "data.yaml", self.classes, self.splits)


class _YoloSeg(_Yolo):
    segmentation = True


class _Masks(_Folders):
    def write_label(self, image: _Image) -> None:
        save_mask_png(self.root / "annotations" / image.split / f"{image.stem}.png", image.detections, image.height,
                      image.width, image.masks)

    def close(self) -> None:
        save_labels_txt(self.root / "labels.txt", self.classes)


class _Voc(_Folders):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.lists: dict[str, list[str]] = {s: [] for s in self.splits}

    def add(self, image: _Image) -> None:
        link_image(image.source, self.root / "JPEGImages" / image.name, self.copy)
        save_voc(self.root / "Annotations" / f"{image.stem}.xml", image.detections, self.classes, image.name, image.height, image.width)
        self.lists[image.split].append(image.stem)

    def close(self) -> None:
        for split, stems in self.lists.items():
            atomic_write_text(self.root / "ImageSets" / "Main" / f"{split}.txt", "".join(s + "\n" for s in stems))


_WRITERS = {"coco": _Coco, "yolo": _Yolo, "yolo-seg": _YoloSeg, "voc": _Voc, "masks": _Masks, "label-studio": LabelStudioWriter}


def check_formats(formats: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")
    return list(dict.fromkeys(formats))


def export_run(
    out: str | Path, formats: list[str] | tuple[str, ...] = ("coco", "yolo"), copy_images: bool = False, progress: bool = False
) -> DatasetStats:
    """Rebuild ``formats`` under ``out`` from its records (no model runs); return what the dataset holds."""
    out = Path(out)
    formats = check_formats(formats)
    read_manifest(out)  # refuse a folder that is not a run before locking (and creating) anything
    with run_lock(out):
        return export_locked(out, formats, copy_images, progress)


def export_locked(out: Path, formats: list[str], copy_images: bool, progress: bool) -> DatasetStats:
    """:func:`export_run` for a caller that already holds :func:`run_lock` (``grounded.label``)."""
    manifest = read_manifest(out)
    root = Path(manifest["images_root"])
    classes: list[str] = manifest["classes"]
    relatives = image_relatives(root, out)
    split_of = assign_splits(relatives, manifest["split"], manifest["seed"])
    names = export_names(relatives)
    splits = list(manifest["split"])
    staging = {fmt: out / f".{fmt}.staging" for fmt in formats}
    for folder in staging.values():
        shutil.rmtree(folder, ignore_errors=True)
    intact = (f"the records in {out / 'records'} and the previous exports are intact; free some space and run "
              f"`grounded export {out}` (or the same `grounded label` command) again")
    try:
        with disk_full_guard(f"the exports under {out}", intact):
            stats = _write_formats(out, root, classes, relatives, names, split_of, splits, staging, copy_images, progress,
                                   intact)
    except BaseException:
        for folder in staging.values():  # give the space back; the finished formats stay as they were
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return stats


def _write_formats(out: Path, root: Path, classes: list[str], relatives: list[str], names: dict[str, str],
                   split_of: dict[str, str], splits: list[str], staging: dict[str, Path], copy_images: bool,
                   progress: bool, intact: str) -> DatasetStats:
    formats = list(staging)
    writers = {fmt: _WRITERS[fmt](staging[fmt], classes, splits, copy_images) for fmt in formats}

    stats = DatasetStats(images=len(relatives), instances={name: 0 for name in classes}, splits={s: 0 for s in splits})
    for rel in tqdm(relatives, desc="export", unit="img", disable=not progress):
        record = read_record(out, rel)
        if record is None:
            stats.missing += 1
            continue
        if "error" in record:
            stats.errors.append({"file": rel, "reason": record["error"]})
            continue
        record = reviewed_record(out, rel, record, classes)  # a person's corrections (grounded/label/reviews.py)
        detections, masks, dropped = _detections_and_masks(record)
        stats.dropped_empty_masks += dropped
        stats.labelled += 1
        stats.empty += len(detections) == 0
        stats.splits[split_of[rel]] += 1
        for class_id, count in Counter(detections.class_id.tolist()).items():
            stats.instances[classes[class_id]] += count
        image = _Image(rel, names[rel], split_of[rel], root / rel, record, detections, masks)
        for fmt, writer in writers.items():
            with disk_full_guard(f"the {fmt} export of {rel!r} under {out}", intact):
                writer.add(image)
    for fmt, writer in writers.items():
        with disk_full_guard(f"the {fmt} export under {out}", intact):
            writer.close()
        _swap(staging[fmt], out / fmt)
    atomic_write_text(out / ERRORS_FILE, json.dumps(stats.errors, indent=2, sort_keys=True) + "\n")
    return stats


def _detections_and_masks(record: dict) -> tuple[sv.Detections, RleMasks | None, int]:
    """A record's detections (no mask decoded), its masks as RLE (None when it has none), and how many
    detections were left out because their mask is empty."""
    detections = record_to_detections(record, with_masks=False)
    items = record["detections"]
    if not items or not all("mask" in item for item in items):
        return detections, None, 0
    masks = RleMasks([item["mask"] for item in items])
    keep = masks.areas() > 0
    if keep.all():
        return detections, masks, 0
    return detections[keep], masks.select(keep), int((~keep).sum())


def _swap(staging: Path, final: Path) -> None:
    staging.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
