"""Test doubles for the video roles, exact on video_scenes.py's scenes (objects = flat colours on black).

- :class:`ColourDetector` (a built Detector, main's FakeDetector): every colour on the frame is one object; its class is its
  dominant channel (video_scenes.CLASS_OF_CHANNEL), kept when the ontology names it; score 0.9; box = its pixels'.
- :class:`ColourTracker` (a VideoSegmenter): an object admitted with a box follows the most common non-black
  colour inside the box; its mask on any frame is exactly the pixels of that colour (empty once it is gone).
- :class:`ColourConcept` (a ConceptVideoModel): finds every colour whose class is one of the phrases, keeps
  one object id per colour, and holds results back ``hold_back`` frames like SAM 3.

Each counts its live sessions and steps, so tests can check that memory (sessions) stays bounded.
"""

from __future__ import annotations

import os

import numpy as np
import supervision as sv
from video_scenes import CLASS_OF_CHANNEL

from grounded.models.detections import labelled_boxes
from grounded.ontology import Ontology
from grounded.testing.fake import FakeDetector
from grounded.video.interfaces import ConceptVideoModel, ObjectMasks, VideoSegmenter


def colours(frame: np.ndarray) -> list[tuple[int, int, int]]:
    flat = frame.reshape(-1, 3)
    found = np.unique(flat[flat.any(axis=1)], axis=0)
    return [tuple(int(v) for v in c) for c in found]


def colour_mask(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(frame == np.asarray(colour, dtype=np.uint8), axis=-1)


class ColourDetector(FakeDetector):
    """See the module docstring: main's built fake detector (grounded.testing.fake) with exact colour boxes.
    ``calls`` counts the frames detected on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _detect(self, image: np.ndarray, ontology: Ontology) -> sv.Detections:
        self.calls += 1
        boxes, scores, ids, phrases = [], [], [], []
        for colour in colours(image):
            name = CLASS_OF_CHANNEL[int(np.argmax(colour))]
            if name not in ontology.class_names:
                continue
            ys, xs = np.nonzero(colour_mask(image, colour))
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            scores.append(0.9)
            ids.append(ontology.class_names.index(name))
            phrases.append(name)
        return labelled_boxes(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(scores),
                              np.asarray(ids, dtype=int), phrases, ontology)


class ColourTracker(VideoSegmenter):
    """See the module docstring. ``exit_after``: end the process (as kill -9 would) after this many steps."""

    name = "colour-tracker"

    def __init__(self, exit_after: int | None = None) -> None:
        self.sessions_alive = 0
        self.max_sessions = 0
        self.steps = 0
        self.exit_after = exit_after

    def start(self, hw):
        self.sessions_alive += 1
        self.max_sessions = max(self.max_sessions, self.sessions_alive)
        return {"hw": hw, "objects": {}}

    def step(self, session, frame_index, frame, boxes_xyxy, new_ids) -> ObjectMasks:
        self.steps += 1
        if self.exit_after is not None and self.steps > self.exit_after:
            os._exit(9)
        for key, box in zip(new_ids, np.asarray(boxes_xyxy).reshape(-1, 4), strict=True):
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            patch = frame[y0:y1, x0:x1].reshape(-1, 3)
            patch = patch[patch.any(axis=1)]
            if len(patch):
                values, counts = np.unique(patch, axis=0, return_counts=True)
                session["objects"][int(key)] = tuple(int(v) for v in values[int(np.argmax(counts))])
            else:
                session["objects"][int(key)] = None
        keys = list(session["objects"])
        masks = [colour_mask(frame, c) if c is not None else np.zeros(frame.shape[:2], bool)
                 for c in session["objects"].values()]
        if not keys:
            return ObjectMasks.empty(frame_index, session["hw"])
        return ObjectMasks(frame_index, np.asarray(keys), np.stack(masks),
                           np.asarray([1.0 if m.any() else 0.0 for m in masks], dtype=np.float32))

    def remove(self, session, obj_ids) -> None:
        for key in obj_ids:
            session["objects"].pop(int(key), None)

    def close(self, session) -> None:
        self.sessions_alive -= 1


class ColourConcept(ConceptVideoModel):
    """See the module docstring."""

    name = "colour-concept"

    def __init__(self, hold_back: int = 3) -> None:
        self.hold_back = hold_back

    def start(self, hw, phrases):
        return {"hw": hw, "phrases": list(phrases), "ids": {}, "buffer": []}

    def step(self, session, frame_index, frame):
        keys, masks, labels = [], [], []
        for colour in colours(frame):
            name = CLASS_OF_CHANNEL[int(np.argmax(colour))]
            if name not in session["phrases"]:
                continue
            key = session["ids"].setdefault(colour, len(session["ids"]))
            keys.append(key)
            masks.append(colour_mask(frame, colour))
            labels.append(session["phrases"].index(name))
        if keys:
            out = ObjectMasks(frame_index, np.asarray(keys), np.stack(masks), np.full(len(keys), 0.8, np.float32),
                              np.asarray(labels))
        else:
            out = ObjectMasks.empty(frame_index, session["hw"], labelled=True)
        session["buffer"].append(out)
        released = session["buffer"][: max(0, len(session["buffer"]) - self.hold_back)]
        session["buffer"] = session["buffer"][len(released):]
        return released

    def finish(self, session):
        released, session["buffer"] = session["buffer"], []
        return released
