"""The teacher's soft masks: one compressed file per labelled image, beside its record (opt-in).

With ``grounded label --soft-masks`` (``LabelConfig(soft_masks=True)``) every labelled image also gets
``OUT/soft/<path relative to the images root>.npz``, written atomically *before* its record (a record on
disk means its soft file is there too), and ``OUT/run.json`` names them under ``"soft_masks"``
(:func:`manifest_entry`), which is how a student finds them (:mod:`grounded.distill.data`). A NumPy ``.npz``
(zip, deflated) with, for the N detections of the record, in the record's order::

    probs     (N, h, w) uint8   each mask's probability x 255 (the sigmoid of SAM's mask logits, before the
                                threshold that makes the hard mask), over the whole image with its long
                                side at most SOFT_SIDE (and at most what the models were given of it)
    xyxy      (N, 4) float32    the detections' boxes, XYXY pixels of the image as displayed
    class_id  (N,) int64        ontology class indices
    image_hw  (2,) int64        the image's displayed (H, W)

About h x w bytes per detection before compression (at most 64 KiB at 256 px): a run's soft files are small
beside its images, and an image's probabilities are never held at full resolution. The zip entries carry a
fixed date, so equal results give equal bytes and a resumed run writes what an uninterrupted one does.
Images without detections get a file with N = 0; error rows get none. Labelling with the flag on over a run
made without it labels again only the images that lack a soft file (their records come out the same).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import InputError
from grounded.formats.files import atomic_write_bytes, disk_full_guard
from grounded.label.records import RESUME_HINT

SOFT_DIR = "soft"
SOFT_SIDE = 256  # long side of the stored probability maps, in pixels
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # zip entries' time stamp: equal arrays, equal bytes


def soft_path(out: str | Path, relative: str, folder: str = SOFT_DIR) -> Path:
    """Where the soft file of the image at ``relative`` (POSIX, below the images root) is in the run ``out``."""
    return Path(out) / folder / f"{relative}.npz"


def manifest_entry() -> dict[str, Any]:
    """What ``run.json`` says under ``"soft_masks"`` when the run stores them."""
    return {"folder": SOFT_DIR, "side": SOFT_SIDE, "format": "npz: probs (N, h, w) uint8 x 255, xyxy, class_id, "
                                                              "image_hw"}


def soft_bytes(probs: np.ndarray, xyxy: np.ndarray, class_id: np.ndarray, image_hw: tuple[int, int]) -> bytes:
    """One image's soft file (see the module docstring), deterministic: the same arrays give the same bytes."""
    arrays = {"probs": np.ascontiguousarray(probs, dtype=np.uint8),
              "xyxy": np.asarray(xyxy, dtype=np.float32).reshape(-1, 4),
              "class_id": np.asarray(class_id, dtype=np.int64).reshape(-1),
              "image_hw": np.asarray(image_hw, dtype=np.int64).reshape(2)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            archive.writestr(entry, member.getvalue())
    return buffer.getvalue()


def write_soft(out: Path, relative: str, data: bytes) -> bool:
    """Write one image's soft file atomically; False (nothing written) when it already holds ``data``."""
    path = soft_path(out, relative)
    if path.is_file() and path.read_bytes() == data:
        return False
    with disk_full_guard(f"the soft masks of {relative!r}", RESUME_HINT):
        atomic_write_bytes(path, data)
    return True


@dataclass(frozen=True)
class SoftMasks:
    """One image's soft file, read back (see the module docstring for the arrays)."""

    probs: np.ndarray  # (N, h, w) uint8
    xyxy: np.ndarray  # (N, 4) float32 XYXY pixels of the displayed image
    class_id: np.ndarray  # (N,) int64
    image_hw: tuple[int, int]  # displayed (H, W)

    def class_maxima(self, num_classes: int) -> np.ndarray:
        """(K, h, w) uint8: per class, the highest probability any of its detections gives each pixel (x 255)."""
        out = np.zeros((num_classes, *self.probs.shape[1:]), dtype=np.uint8)
        for probs, c in zip(self.probs, self.class_id, strict=True):
            if 0 <= c < num_classes:
                np.maximum(out[c], probs, out=out[c])
        return out


def read_soft(path: str | Path) -> SoftMasks:
    """Read a soft file; InputError naming it when it is not one (truncated, another format)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            soft = SoftMasks(npz["probs"], npz["xyxy"], npz["class_id"], tuple(int(v) for v in npz["image_hw"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"soft mask file {str(path)!r} cannot be read ({exc}); label the image again "
                         "(grounded label --soft-masks on the same run)") from None
    if soft.probs.ndim != 3 or len(soft.probs) != len(soft.class_id) or soft.probs.dtype != np.uint8:
        raise InputError(f"soft mask file {str(path)!r}: probs must be (N, h, w) uint8 with one class_id each")
    return soft
