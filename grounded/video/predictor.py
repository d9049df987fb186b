"""The VideoPredictor: what a text prompt names, followed through a video, frame by frame.

::

    predictor = VideoPredictor(detector="IDEA-Research/grounding-dino-tiny", segmenter="facebook/sam2.1-hiera-tiny")
    predictor = VideoPredictor(model="facebook/sam3")          # SAM 3 video: every phrase in one session
    predictor = VideoPredictor(detector=image_predictor.detector, segmenter="facebook/sam2.1-hiera-tiny")  # shared
    for frame_index, detections in predictor.track("clip.mp4", "car, person"):
        detections.tracker_id, detections.mask, detections.data["class_name"]

Two ways, composed from built backends:

- **detector + video segmenter** (:class:`DetectAndTrack`): any grounded detector (built as for images, or
  an image Predictor's own) finds the prompt's objects on each chunk's first frame and on every frame whose index is a
  multiple of ``detect_every`` (the same frames in overlapping chunks, so both admit the same objects);
  a :class:`~grounded.video.interfaces.VideoSegmenter` (SAM 2 / 2.1, EdgeTAM video) propagates every object
  through the frames. New detections enter the running session (no reset) unless their mask matches a live
  track (:mod:`grounded.video.tracks`). Detections go through the same thresholds, box NMS and
  ``max_detections`` as images (:class:`grounded.config.SegmentOptions`); the image segmenter's options
  (``multimask``, ``mask_threshold``, ...) and those the detector refuses are refused (``REFUSED_OPTIONS``).
  With ``tile`` (:class:`grounded.config.TileOptions`, ``--tile auto|N``) the detector runs over overlapping
  slices of each key frame (and the whole frame, unless ``tile_whole=False``), its boxes merged as for images
  (:func:`grounded.pipeline.tiled.detect_tiled`, one code path): small objects in large frames; the video
  segmenter still sees whole frames.
- **concept video model** (:class:`ConceptTrack`): SAM 3 video finds and tracks every phrase of the ontology
  in one session; phrase -> class is exact (the phrase's index). It has no separate detector to tile, so
  ``tile`` is refused with it.

Either way the video is streamed (:mod:`grounded.video.frames`) in overlapping chunks with ids stitched
across them (:mod:`grounded.video.chunks`): memory does not grow with the video's length. Each frame's
result is an ``sv.Detections`` (:func:`grounded.video.tracks.frame_detections`) with ``tracker_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import supervision as sv

from grounded.config import SegmentOptions, TileOptions
from grounded.errors import InputError
from grounded.ontology import Ontology
from grounded.pipeline.selection import select_boxes
from grounded.pipeline.tiled import detect_tiled, plan_slices
from grounded.video.chunks import track_chunks
from grounded.video.frames import FrameArray, VideoSource, open_video
from grounded.video.interfaces import ConceptVideoModel, VideoSegmenter
from grounded.video.options import TrackOptions
from grounded.video.records import ChunkStore
from grounded.video.tracks import Candidate, TrackBook, TrackedFrame, frame_detections

logger = logging.getLogger(__name__)

DEFAULT_VIDEO_SEGMENTER = "facebook/sam2.1-hiera-tiny"
_VIDEO_MASKS = "a video segmenter makes each track's masks itself, from its box and its memory"
REFUSED_OPTIONS = {  # SegmentOptions field -> why tracking cannot honour it (refused, never ignored)
    "multimask": _VIDEO_MASKS, "mask_threshold": _VIDEO_MASKS, "sam_box_batch": _VIDEO_MASKS,
    "nms_on": "detections are suppressed on their boxes, before any mask exists",
    "text_tokens": "CLIP text tokens are for SAM's image prompt encoder", "verify": "CLIP verification is for images",
}


class DetectAndTrack:
    """One chunk: a detector every ``detect_every`` frames + a video segmenter session (see module docstring)."""

    def __init__(self, detector: Any, segmenter: VideoSegmenter, ontology: Ontology, segment_options: SegmentOptions,
                 options: TrackOptions, start: int, hw: tuple[int, int], tiling: TileOptions | None = None) -> None:
        """``hw``: the frames' (H, W); ``tiling``: the detector's slices on key frames (None or off: whole frames)."""
        self.detector, self.segmenter, self.ontology = detector, segmenter, ontology
        self.segment_options, self.options, self.start = segment_options, options, start
        self.tiling = tiling or TileOptions()
        self.slices = plan_slices(detector, hw, self.tiling)  # (K, 4) XYXY, or None: frames seen whole
        self.session = segmenter.start(hw)
        self.book = TrackBook(options)
        self.next_key = 0  # session object ids: never reused within the session

    def detect(self, frame: np.ndarray) -> sv.Detections:
        """RGB uint8 (H, W, 3) key frame -> boxes (XYXY pixels) selected as for images, tiled when planned."""
        if self.slices is not None:
            return detect_tiled(self.detector, frame, self.slices, self.ontology, self.segment_options, self.tiling)
        features = self.detector.encode([frame])
        return select_boxes(self.detector.detect(features, self.ontology, self.segment_options)[0], self.segment_options)

    def step(self, frame_index: int, frame: np.ndarray) -> list[TrackedFrame]:
        candidates: list[Candidate] = []
        boxes = np.zeros((0, 4), dtype=np.float32)
        due = frame_index == self.start or frame_index % self.options.detect_every == 0  # same frames in every chunk
        if due and len(self.book.live) < self.options.max_objects:
            found = self.detect(frame)
            boxes = np.asarray(found.xyxy, dtype=np.float32).reshape(-1, 4)
            for i in range(len(found)):
                candidates.append(Candidate(self.next_key, int(found.class_id[i]), str(found.data["class_name"][i]),
                                            str(found.data["phrase"][i]), float(found.confidence[i])))
                self.next_key += 1
        out = self.segmenter.step(self.session, frame_index, frame, boxes, [c.key for c in candidates])
        refused = self.book.admit(candidates, out)
        tracked, ended = self.book.observe(out)
        if refused or ended:
            self.segmenter.remove(self.session, refused + ended)
        return [tracked]

    def finish(self) -> list[TrackedFrame]:
        self.segmenter.close(self.session)
        return []


class ConceptTrack:
    """One chunk: a concept video model session with every phrase of the ontology (see module docstring)."""

    def __init__(self, model: ConceptVideoModel, ontology: Ontology, options: TrackOptions, hw: tuple[int, int]) -> None:
        self.model, self.ontology = model, ontology
        self.phrases = ontology.phrases()  # [(phrase, class id)]: phrase index = the model's label
        self.session = model.start(hw, [p for p, _ in self.phrases])
        self.book = TrackBook(options)

    def _tracked(self, out: Any) -> TrackedFrame:
        for k, key in enumerate(out.obj_ids):
            key = int(key)
            if key not in self.book.live and out.masks[k].any():
                phrase, class_id = self.phrases[int(out.labels[k])]
                self.book.new_track(key, class_id, self.ontology.classes[class_id].name, phrase, float(out.scores[k]))
        return self.book.observe(out)[0]

    def step(self, frame_index: int, frame: np.ndarray) -> list[TrackedFrame]:
        return [self._tracked(out) for out in self.model.step(self.session, frame_index, frame)]

    def finish(self) -> list[TrackedFrame]:
        released = [self._tracked(out) for out in self.model.finish(self.session)]
        self.model.close(self.session)
        return released


def as_ontology(prompt: Any) -> Ontology:
    """An Ontology, a YAML file (``.yaml``/``.yml``), a caption (``"car . person ."``), class names separated by
    commas (``"car, person"``), one phrase, or a list of class names."""
    from pathlib import Path

    if isinstance(prompt, Path) or (isinstance(prompt, str) and prompt.strip().lower().endswith((".yaml", ".yml"))):
        return Ontology.from_yaml(prompt)
    if isinstance(prompt, str) and "," in prompt and " ." not in f" {prompt.strip()}":
        return Ontology.from_classes(prompt)
    return Ontology.from_prompt(prompt)


def split_options(options: dict[str, Any]) -> tuple[SegmentOptions, TrackOptions, TileOptions]:
    """Keyword options -> (SegmentOptions, TrackOptions, TileOptions); an unknown name is an error listing the
    valid ones."""
    classes = (SegmentOptions, TrackOptions, TileOptions)
    names = [{f.name for f in fields(cls)} for cls in classes]
    unknown = sorted(set(options).difference(*names))
    if unknown:
        raise InputError(f"unknown option(s) {unknown}; valid options: {sorted(set().union(*names))}")
    segment, track, tiling = (cls(**{k: v for k, v in options.items() if k in own})
                              for cls, own in zip(classes, names, strict=True))
    return segment, track, tiling


def as_source(video: Any, allow_vfr: bool = False) -> VideoSource:
    """A path (video file or frame folder), a VideoSource, or a sequence of RGB frames -> a VideoSource."""
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, (str, bytes)) or hasattr(video, "__fspath__"):
        return open_video(video, allow_vfr=allow_vfr)
    if isinstance(video, (Sequence, np.ndarray)):
        return FrameArray(video)
    raise InputError(f"video must be a file, a frame folder or a sequence of RGB frames, got {type(video).__name__}")


class VideoPredictor:
    """Detector + video segmenter, or one concept video model; see the module docstring."""

    def __init__(self, detector: Any = None, segmenter: Any = None, *, model: Any = None, device: str | None = None,
                 dtype: str | None = None, local_files_only: bool = False, **options: Any) -> None:
        """Each role is a name or folder (loaded here) or a backend built already: ``detector`` a
        :class:`~grounded.models.interfaces.Detector` (an image Predictor's ``predictor.detector``: one loaded
        Grounding DINO serves images and video), ``segmenter`` a
        :class:`~grounded.video.interfaces.VideoSegmenter`, ``model`` a
        :class:`~grounded.video.interfaces.ConceptVideoModel` (SAM 3 video), which replaces both. ``detector``
        defaults to Grounding DINO tiny, ``segmenter`` to SAM 2.1 tiny (video). ``device`` / ``dtype`` /
        ``local_files_only``: how the named roles load (a detector through
        :func:`grounded.pipeline.build.build_backends`, as for images). ``options``: SegmentOptions and
        TrackOptions fields, and TileOptions fields (``tile="auto"`` or N: the detector over slices of key frames;
        refused with ``model``)."""
        from grounded.config import ModelConfig
        from grounded.models.loading import resolve_device, resolve_dtype
        from grounded.pipeline.build import build_backends, is_built
        from grounded.video.backends import load_video_backend

        if model is not None and (detector is not None or segmenter is not None):
            raise InputError(f"model={model!r} (a concept video model) replaces the detector and the video segmenter; "
                             f"give either model (--model) or detector/segmenter (--detector/--segmenter), not both")
        tiling = split_options(options)[2]  # bad options fail before any model loads
        if model is not None and tiling.enabled:
            raise InputError(f"tile={tiling.tile!r}: tiling runs a detector over slices of the key frames, and the "
                             f"concept video model {getattr(model, 'name', model)!r} has none (it finds and tracks in "
                             f"one session over whole frames); drop --tile, or track with --detector + --segmenter "
                             f"(e.g. Grounding DINO + SAM 2.1 video), whose detector is tiled")
        roles = {"model": model} if model is not None else {"detector": detector, "segmenter": segmenter}
        if (device is not None or dtype is not None) and all(is_built(v) for v in roles.values()):
            raise InputError("device / dtype configure loading, and the backends given are already built: pass names "
                             "or folders instead, or build the backends on that device")
        if "detector" in roles and not is_built(detector):
            config = ModelConfig(detector=detector, device=device, dtype=dtype, local_files_only=local_files_only)
            roles["detector"] = build_backends(config, roles=("detector",)).detector
        for role in ("segmenter", "model"):
            if role in roles and not is_built(roles[role]):
                name = roles[role] or DEFAULT_VIDEO_SEGMENTER
                roles[role] = load_video_backend(str(name), role, resolve_device(device), resolve_dtype(dtype),
                                                 local_files_only)
        self.detector, self.segmenter, self.model = (roles.get(k) for k in ("detector", "segmenter", "model"))
        self.segment_options, self.options, self.tiling = split_options(options)
        defaults = SegmentOptions()
        changed = [f.name for f in fields(SegmentOptions) if getattr(self.segment_options, f.name) != getattr(defaults, f.name)]
        if self.model is not None and changed:
            raise InputError(f"{changed} are detector options; the concept video model "
                             f"{getattr(self.model, 'name', '')!r} applies its own detection thresholds "
                             f"(its config's score_threshold_detection / new_det_thresh): leave them at their defaults")
        refused = {**REFUSED_OPTIONS, **getattr(self.detector, "refused_options", {})}
        for name in changed:
            if name in refused:
                raise InputError(f"{name}={getattr(self.segment_options, name)!r} is not supported when tracking with "
                                 f"{type(self.detector).__name__} + {type(self.segmenter).__name__}: {refused[name]}; "
                                 f"leave it at its default ({getattr(defaults, name)!r})")
        hold_back = (self.model or self.segmenter).hold_back
        self.options.check_hold_back(hold_back, type(self.model or self.segmenter).__name__)

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the models and options (for manifests and resume checks)."""
        roles = {"model": self.model} if self.model is not None else {"detector": self.detector,
                                                                      "segmenter": self.segmenter}
        out: dict[str, Any] = {role: _identity(backend) for role, backend in roles.items()}
        out["track_options"] = self.options.to_dict()
        if self.model is None:
            out["options"] = asdict(self.segment_options)
        if self.tiling.enabled:  # only then: runs recorded before tiling existed keep their identity
            out["tiling"] = asdict(self.tiling)
        return out

    def chunk_tracker(self, ontology: Ontology, hw: tuple[int, int]):
        """A factory ``start -> ChunkTracker`` for one video."""
        if self.model is not None:
            return lambda start: ConceptTrack(self.model, ontology, self.options, hw)
        return lambda start: DetectAndTrack(self.detector, self.segmenter, ontology, self.segment_options,
                                            self.options, start, hw, self.tiling)

    def track(self, video: Any, prompt: str | Sequence[str] | Ontology, *, store: ChunkStore | None = None,
              allow_vfr: bool = False) -> Iterator[tuple[int, sv.Detections]]:
        """``(frame_index, sv.Detections)`` for every frame of ``video``, in order, each as soon as it is final.

        ``video``: a video file, a folder of numbered frames, or a sequence of RGB uint8 (H, W, 3) frames.
        ``store``: resume from and write chunk records (grounded/video/records.py); frames of chunks finished
        earlier are not yielded again.
        """
        ontology = as_ontology(prompt)
        source = as_source(video, allow_vfr)
        hw = source.info.hw
        for index, tagged in track_chunks(source, self.chunk_tracker(ontology, hw), self.options, store):
            yield index, frame_detections([obj for _, obj in tagged], [gid for gid, _ in tagged], hw)


def _identity(backend: Any) -> dict[str, Any]:
    describe = getattr(backend, "describe", None)
    if callable(describe):
        return describe()
    from grounded.models.interfaces import describe_backend

    return describe_backend(backend)
