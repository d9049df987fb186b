"""``grounded.track``: follow what a prompt names through a video (an iterator), or through videos into files.

::

    import grounded
    for frame_index, detections in grounded.track("clip.mp4", "car, person"):     # sv.Detections per frame
        detections.tracker_id, detections.mask, detections.data["class_name"]

    grounded.track("videos/", "car, person", out="tracked/")                     # files, resumable; a summary

With ``out``, the input is a video file, a folder of numbered frames, or a folder of videos (its video files
and its sub-folders of frames, sorted by name), and every video gets ``OUT/<name>/`` (the file or folder name):
its chunk records (``chunks/``, grounded/video/records.py) and exports (grounded/video/export.py: MOT, MOTS,
id maps, YouTube-VIS JSON, annotated MP4), then ``status.json``. The run is resumable: running the same command
again skips finished videos and continues a video from its last finished chunk, with the same bytes as an
uninterrupted run. ``OUT/run.json`` records the run (ontology, models, options, formats) and refuses to mix
another one in unless ``force=True`` (more videos can be tracked into the same OUT with the same settings). One fault boundary per video: a video that fails (unreadable, truncated, ..., or an
error in the models) gets its reason in its ``status.json`` and in the summary, and the next video goes on.

Engines: ``"local"`` (videos one after another in this process) or ``"ray"`` (one video per actor on a Ray
cluster: each actor builds the models once and writes its videos' folders itself; the folder must be shared).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import supervision as sv

from grounded.errors import InputError
from grounded.formats.files import atomic_write_text
from grounded.ontology import Ontology
from grounded.utils.images import IMAGE_EXTENSIONS
from grounded.video.export import FORMATS, check_formats, export_video
from grounded.video.frames import VIDEO_EXTENSIONS, open_video
from grounded.video.predictor import VideoPredictor, as_ontology
from grounded.video.records import ChunkStore

logger = logging.getLogger(__name__)

MANIFEST, STATUS, SUMMARY = "run.json", "status.json", "summary.json"


@dataclass(frozen=True)
class VideoPredictorFactory:
    """Builds ``VideoPredictor(**kwargs)``: a picklable recipe, so each Ray actor loads the models once."""

    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> VideoPredictor:
        return VideoPredictor(**self.kwargs)


def find_videos(path: str | Path) -> list[tuple[str, Path]]:
    """(output name, path) of each video ``path`` holds: itself (a file or a frame folder) or, for a folder of
    videos, its video files and sub-folders of frames, by name."""
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(f"video {str(path)!r} not found; give a video file, a folder of frames or a folder of videos")
    if not path.is_dir() or _holds_images(path):
        return [(path.name, path)]
    found = [(p.name, p) for p in sorted(path.iterdir()) if not p.name.startswith(".")
             and ((p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or (p.is_dir() and _holds_images(p)))]
    if not found:
        raise InputError(f"{str(path)!r} holds no video files ({', '.join(VIDEO_EXTENSIONS)}) and no folders of "
                         f"numbered frames")
    return found


def _holds_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``OUT/.lock`` (released when the process ends, killed or not)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{str(out)!r} is being written by another `grounded track`; wait or use another "
                             f"--out") from None
        yield


def _start(out: Path, manifest: dict[str, Any], force: bool) -> None:
    """Write ``OUT/run.json``; refuse a folder holding a run with other settings unless ``force`` (then clear it)."""
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != manifest:
            changed = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            if not force:
                raise InputError(f"{str(out)!r} holds a tracking run with other settings ({', '.join(changed)} "
                                 f"changed); use another --out, or --force to discard it and start over")
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
    atomic_write_text(path, json.dumps(manifest, sort_keys=True, indent=2) + "\n")


def _describe_error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "reason": " ".join(str(exc).split())[:500] or repr(exc)}


def track_one(predictor: VideoPredictor, name: str, path: Path, ontology: Ontology, out: Path,
              formats: Sequence[str], allow_vfr: bool = False, progress: bool = False) -> dict[str, Any]:
    """Track one video into ``out/<name>`` (resuming), export it; the status row. Never raises an Exception."""
    folder = out / name
    status_path = folder / STATUS
    if status_path.is_file():
        status = json.loads(status_path.read_text(encoding="utf-8"))
        if status.get("done"):
            return status
    started = time.perf_counter()
    try:
        source = open_video(path, allow_vfr=allow_vfr)
        store = ChunkStore(folder)
        frames = _frames(predictor, source, ontology, store, progress, name)
        written = export_video(store, source, folder, ontology, formats, name=name)
        tracks = {e["id"] for _, entries in store.frames() for e in entries}
        status = {"video": name, "done": True, "frames": source.info.frame_count, "tracks": len(tracks),
                  "video_info": source.info.to_dict(), "exports": sorted(written)}
        logger.info("%s: %d frames (%d this run) in %.1f s", name, source.info.frame_count, frames,
                    time.perf_counter() - started)
    except Exception as exc:  # the fault boundary: this video's reason, and the run goes on
        logger.debug("%s failed", name, exc_info=exc)
        status = {"video": name, "done": False, "error": _describe_error(exc)}
    atomic_write_text(status_path, json.dumps(status, sort_keys=True, indent=2) + "\n")
    return status


def _frames(predictor: VideoPredictor, source: Any, ontology: Ontology, store: ChunkStore, progress: bool,
            name: str) -> int:
    from tqdm.auto import tqdm

    done = 0
    with tqdm(total=source.info.frame_count, initial=0, desc=name, unit="frame", disable=not progress) as bar:
        for _ in predictor.track(source, ontology, store=store):
            done += 1
            bar.update(1)
    return done


class TrackActor:
    """The Ray Data UDF: builds the predictor once per actor, tracks one video per row into the shared OUT."""

    def __init__(self, factory: Callable[[], VideoPredictor], ontology: Ontology, out: str, formats: list[str],
                 allow_vfr: bool) -> None:
        self.predictor, self.ontology, self.out = factory(), ontology, Path(out)
        self.formats, self.allow_vfr = formats, allow_vfr

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [track_one(self.predictor, str(n), Path(str(p)), self.ontology, self.out, self.formats, self.allow_vfr)
                for n, p in zip(batch["name"], batch["path"], strict=True)]
        return {"status": np.array([json.dumps(r, sort_keys=True) for r in rows], dtype=object)}


def _track_ray(ray: Any, videos: list[tuple[str, Path]], factory: Callable[[], VideoPredictor], ontology: Ontology,
               out: Path, formats: list[str], allow_vfr: bool, options: Any) -> list[dict[str, Any]]:
    """One video per actor (``options``: grounded.label.ray_engine.RayOptions); the status rows, in input order."""
    dataset = ray.data.from_items([{"name": n, "path": str(p.resolve())} for n, p in videos])
    rows = dataset.map_batches(TrackActor, fn_constructor_kwargs={
        "factory": factory, "ontology": ontology, "out": str(out.resolve()), "formats": formats,
        "allow_vfr": allow_vfr}, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers), num_cpus=options.cpus_per_worker,
        num_gpus=options.gpus_per_worker)
    statuses = {s["video"]: s for s in (json.loads(str(r["status"])) for r in rows.iter_rows())}
    return [statuses[n] for n, _ in videos]


def track(video: Any, prompt: str | Sequence[str] | Ontology | Path, *, out: str | Path | None = None,
          predictor: VideoPredictor | Callable[[], VideoPredictor] | None = None, formats: Sequence[str] = FORMATS,
          force: bool = False, allow_vfr: bool = False, progress: bool = False, engine: str = "local",
          workers: int = 1, ray_address: str | None = None, cpus_per_worker: float = 0.5,
          gpus_per_worker: float = 0.0, **options: Any) -> Iterator[tuple[int, sv.Detections]] | dict[str, Any]:
    """Without ``out``: ``(frame_index, sv.Detections)`` for every frame of ``video`` (an iterator; see
    :meth:`VideoPredictor.track`). With ``out``: track every video of ``video`` into files (see the module
    docstring) and return the summary ``{"out", "videos": [status rows], "failed"}`` (also ``OUT/summary.json``).

    ``predictor``: a VideoPredictor, or a zero-argument callable building one (picklable for ``engine="ray"``);
    default ``VideoPredictor(**options)`` (options: detector, segmenter, model (each a name, a folder or a built
    backend, e.g. an image Predictor's ``detector``), device, dtype, local_files_only, SegmentOptions,
    TrackOptions and TileOptions fields: ``tile="auto"`` tiles the detector on key frames, and is part of the
    run's identity in ``OUT/run.json``, so resuming with other tile settings is refused unless ``force``).
    """
    ontology = as_ontology(prompt)
    if out is None:
        if engine != "local":
            raise InputError("engine='ray' writes files: give out=")
        instance = predictor() if callable(predictor) and not isinstance(predictor, VideoPredictor) else predictor
        return (instance or VideoPredictor(**options)).track(video, ontology, allow_vfr=allow_vfr)
    if engine not in ("local", "ray"):
        raise InputError(f"engine {engine!r}: choose 'local' (this process) or 'ray' (a Ray cluster)")
    formats = check_formats(list(formats))
    out = Path(out)
    videos = find_videos(video)
    if isinstance(predictor, VideoPredictor):
        factory: Callable[[], VideoPredictor] = lambda: predictor  # noqa: E731
    else:
        factory = predictor or VideoPredictorFactory(dict(options))
    manifest = {"format_version": 1, "ontology": ontology.to_dict(), "formats": formats}  # videos may be added later
    with _locked(out):
        if engine == "ray":
            from grounded.label.ray_engine import RayOptions, describe_on_cluster, ray_session

            ray_options = RayOptions(ray_address, int(workers), float(gpus_per_worker), float(cpus_per_worker))
            with ray_session(ray_options) as ray:
                _start(out, {**manifest, "model": describe_on_cluster(ray, factory, ray_options)}, force)
                rows = _track_ray(ray, videos, factory, ontology, out, formats, allow_vfr, ray_options)
        else:
            instance = factory()
            _start(out, {**manifest, "model": instance.describe()}, force)
            rows = [track_one(instance, name, path, ontology, out, formats, allow_vfr, progress) for name, path in videos]
    summary = {"out": str(out), "videos": rows, "failed": sum(1 for r in rows if not r.get("done"))}
    atomic_write_text(out / SUMMARY, json.dumps(summary, sort_keys=True, indent=2) + "\n")
    return summary
