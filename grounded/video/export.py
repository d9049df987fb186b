"""Exports of a tracked video, rebuilt from its chunk records (grounded/video/records.py), one frame at a time.

Into the video's output folder (``OUT/<video>/``), each written atomically (whole or not at all):

- ``mot.txt``: MOTChallenge boxes, one line per object and frame: ``frame,id,x,y,w,h,score,-1,-1,-1`` (frame
  from 1, box = the mask's tight box in pixels, score = the track's detection score). Read by ``motmetrics``
  (``mm.io.loadtxt(path, fmt="mot15-2D")``) and the MOTChallenge tools.
- ``mots.txt``: MOTS masks (KITTI MOTS / MOTChallenge MOTS text): ``frame id class_id height width rle``
  (frame from 0, ``class_id`` = ontology class id + 1, ``rle`` = COCO compressed RLE). MOTS masks may not
  overlap: each pixel belongs to the object the id map gives it.
- ``idmaps/000000.png``, ...: per frame, a 16-bit PNG of track ids (0 = background). Where masks overlap,
  larger objects are painted first and smaller ones over them (the rule of grounded's semantic masks).
- ``ytvis.json``: YouTube-VIS style: ``videos`` (frame names, size, length), ``categories`` (id = class id + 1),
  ``annotations`` (one per track: ``category_id``, ``segmentations`` / ``bboxes`` (XYWH) / ``areas`` per frame,
  ``null`` where the track is not visible, ``score``). Masks are COCO RLE, read by pycocotools.
- ``tracked.mp4``: the video with masks, boxes and ``#id class`` labels drawn by supervision's annotators,
  coloured by track (H.264 through PyAV; an odd width or height is padded by one black pixel row/column, as
  H.264's 4:2:0 needs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import supervision as sv

from grounded.errors import InputError
from grounded.ontology import Ontology
from grounded.utils.masks import mask_to_rle, rle_to_mask
from grounded.video.frames import VideoSource, frame_rate
from grounded.video.records import ChunkStore

FORMATS = ("mot", "mots", "idmaps", "ytvis", "mp4")


def check_formats(formats: Sequence[str]) -> list[str]:
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"unknown video export format(s) {unknown}; choose from {list(FORMATS)}")
    return [f for f in FORMATS if f in formats]


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file written line by line to a temporary name, fsync'ed and renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def id_map(masks: Sequence[np.ndarray], ids: Sequence[int], hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint16 track ids, 0 = background; larger masks painted first, smaller over them (ties: by id)."""
    out = np.zeros(hw, dtype=np.uint16)
    order = sorted(range(len(ids)), key=lambda i: (-int(masks[i].sum()), int(ids[i])))
    for i in order:
        out[masks[i]] = int(ids[i])
    return out


def _objects(entries: list[dict[str, Any]]) -> tuple[list[int], list[np.ndarray]]:
    return [int(e["id"]) for e in entries], [rle_to_mask(e["rle"]) for e in entries]


def write_mot(store: ChunkStore, path: Path) -> None:
    with atomic_text(path) as out:
        for index, entries in store.frames():
            for e in entries:
                x0, y0, x1, y1 = e["box"]
                out.write(f"{index + 1},{e['id']},{x0:g},{y0:g},{x1 - x0:g},{y1 - y0:g},{e['score']:.6g},-1,-1,-1\n")


def write_mots_and_idmaps(store: ChunkStore, hw: tuple[int, int], mots: Path | None, idmaps: Path | None) -> None:
    """MOTS lines and/or id-map PNGs from one pass over the records (both follow the id map)."""
    from PIL import Image

    classes: dict[int, int] = {}
    with atomic_text(mots) if mots else _nothing() as out:
        for index, entries in store.frames():
            ids, masks = _objects(entries)
            classes.update({int(e["id"]): int(e["class_id"]) for e in entries})
            ids_map = id_map(masks, ids, hw)
            if idmaps is not None:
                target = idmaps / f"{index:06d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp")
                Image.fromarray(ids_map).save(tmp, format="PNG")
                os.replace(tmp, target)
            if out is not None:
                for track in sorted(set(ids)):
                    own = ids_map == track
                    if own.any():
                        rle = mask_to_rle(own)["counts"]
                        out.write(f"{index} {track} {classes[track] + 1} {hw[0]} {hw[1]} {rle}\n")


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def write_ytvis(store: ChunkStore, path: Path, ontology: Ontology, frame_names: list[str], hw: tuple[int, int]) -> None:
    length = len(frame_names)
    tracks: dict[int, dict[str, Any]] = {}
    for index, entries in store.frames():
        for e in entries:
            track = tracks.setdefault(int(e["id"]), {"category_id": int(e["class_id"]) + 1, "score": e["score"],
                                                      "segmentations": [None] * length, "bboxes": [None] * length,
                                                      "areas": [None] * length})
            x0, y0, x1, y1 = e["box"]
            track["segmentations"][index] = e["rle"]
            track["bboxes"][index] = [x0, y0, x1 - x0, y1 - y0]
            track["areas"][index] = int(rle_area(e["rle"]))
    data = {
        "info": {"description": "grounded track"},
        "videos": [{"id": 1, "file_names": frame_names, "height": hw[0], "width": hw[1], "length": length}],
        "categories": [{"id": i + 1, "name": c.name} for i, c in enumerate(ontology.classes)],
        "annotations": [{"id": tid, "video_id": 1, "iscrowd": 0, "height": hw[0], "width": hw[1], **track}
                        for tid, track in sorted(tracks.items())],
    }
    with atomic_text(path) as out:
        json.dump(data, out, separators=(",", ":"))
        out.write("\n")


def rle_area(rle: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("utf-8")}))


def frame_names(source: VideoSource, name: str) -> list[str]:
    """Frame file names for YouTube-VIS: a folder's own files, else ``<name>/000000.jpg`` ... (not extracted)."""
    files = getattr(source, "files", None)
    if files is not None:
        return [f"{name}/{p.name}" for p in files]
    return [f"{name}/{i:06d}.jpg" for i in range(source.info.frame_count)]


def detections_from_entries(entries: list[dict[str, Any]], hw: tuple[int, int]) -> sv.Detections:
    if not entries:
        return sv.Detections.empty()
    ids, masks = _objects(entries)
    return sv.Detections(xyxy=np.asarray([e["box"] for e in entries], dtype=np.float32), mask=np.stack(masks),
                         confidence=np.asarray([e["score"] for e in entries], dtype=np.float32),
                         class_id=np.asarray([e["class_id"] for e in entries], dtype=int),
                         tracker_id=np.asarray(ids, dtype=int),
                         data={"class_name": np.array([e["class_name"] for e in entries], dtype=str)})


def annotate_frame(frame: np.ndarray, detections: sv.Detections) -> np.ndarray:
    """Masks, boxes and ``#id class`` labels coloured by track, on an RGB (H, W, 3) uint8 frame."""
    if len(detections) == 0:
        return frame
    scene = frame.copy()
    lookup = sv.ColorLookup.TRACK
    scene = sv.MaskAnnotator(opacity=0.45, color_lookup=lookup).annotate(scene, detections)
    scene = sv.BoxAnnotator(thickness=max(1, round(max(frame.shape[:2]) / 400)), color_lookup=lookup).annotate(
        scene, detections)
    labels = [f"#{t} {c}" for t, c in zip(detections.tracker_id, detections.data["class_name"], strict=True)]
    return sv.LabelAnnotator(text_scale=max(0.4, max(frame.shape[:2]) / 1600), color_lookup=lookup).annotate(
        scene, detections, labels=labels)


def write_mp4(store: ChunkStore, source: VideoSource, path: Path) -> None:
    """The annotated video, frames decoded again from ``source`` (one at a time)."""
    import av

    height, width = source.info.hw
    even_h, even_w = height + height % 2, width + width % 2
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(tmp), "w") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=frame_rate(source.info))
            stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
            records = store.frames()
            for (index, frame), (record_index, entries) in zip(source.frames(), records, strict=False):
                if index != record_index:
                    raise RuntimeError(f"frame {index} has no record (found {record_index}); track the video again")
                drawn = annotate_frame(frame, detections_from_entries(entries, (height, width)))
                if (even_h, even_w) != (height, width):
                    drawn = np.pad(drawn, ((0, even_h - height), (0, even_w - width), (0, 0)))
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(drawn), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_video(store: ChunkStore, source: VideoSource, folder: str | Path, ontology: Ontology,
                 formats: Sequence[str] = FORMATS, name: str | None = None) -> dict[str, str]:
    """Write ``formats`` for one tracked video into ``folder``; return {format: path written}."""
    folder = Path(folder)
    formats = check_formats(formats)
    hw = source.info.hw
    written: dict[str, str] = {}
    if "mot" in formats:
        write_mot(store, folder / "mot.txt")
        written["mot"] = str(folder / "mot.txt")
    if "mots" in formats or "idmaps" in formats:
        mots = folder / "mots.txt" if "mots" in formats else None
        idmaps = folder / "idmaps" if "idmaps" in formats else None
        write_mots_and_idmaps(store, hw, mots, idmaps)
        written.update({k: str(p) for k, p in (("mots", mots), ("idmaps", idmaps)) if p is not None})
    if "ytvis" in formats:
        write_ytvis(store, folder / "ytvis.json", ontology, frame_names(source, name or folder.name), hw)
        written["ytvis"] = str(folder / "ytvis.json")
    if "mp4" in formats:
        write_mp4(store, source, folder / "tracked.mp4")
        written["mp4"] = str(folder / "tracked.mp4")
    return written
