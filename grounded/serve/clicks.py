"""Clicks -> one object's mask: the interactive path of the Review tab and ``POST /v1/segment/points``.

Which segmenter answers clicks (:func:`click_segmenter`): the predictor's own segmenter when it takes point
prompts (SAM, SAM-HQ, SAM 2, EdgeTAM, SAM 3's tracker: ``Segmenter.takes_points``); with a concept segmenter
(SAM 3) its tracker part where the checkpoint holds one (``tracker()`` of the backend); otherwise the request is
refused (501) with "clicks need a segmenter". One click (:func:`decode_click`) runs only the prompt encoder and
the mask decoder on the image's cached features (:mod:`grounded.serve.cache`).

SAM's convention for ambiguity: a single click with no box and no prior asks for K = 3 masks and keeps the one
with the best predicted IoU; later clicks (or a box, or a prior) ask for one. The kept mask's low-resolution
logits are the prior (``mask_logits``) of the next click on the same object (SAM's iterative refinement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.models.interfaces import Features, PointPrompt
from grounded.serve.security import Refused
from grounded.utils.masks import mask_box, rle_to_mask

NO_CLICKS = ("clicks need a segmenter that takes point prompts (SAM, SAM-HQ, SAM 2, EdgeTAM, or SAM 3 with its "
             "tracker weights): {why}; start the server with --detector ... --segmenter ... for the Review tab's "
             "click tools (the brush, eraser and the rest work without)")


@dataclass
class ClickAnswer:
    """One object's mask after a click."""

    mask: np.ndarray  # (H, W) bool at the size the features describe (the padded image; the caller crops)
    score: float  # the segmenter's predicted IoU of the kept mask
    logits: torch.Tensor  # (h, w) low-resolution logits of the kept mask: the next click's prior


def click_segmenter(predictor: Any) -> tuple[Any, bool]:
    """(segmenter, whether it has image features of its own) answering clicks for ``predictor``; Refused 501."""
    own = getattr(predictor, "segmenter", None)
    if own is not None:
        if not getattr(own, "takes_points", False):
            raise Refused(NO_CLICKS.format(why=f"the segmenter {own.name!r} ({type(own).__name__}) takes none"), 501)
        return own, False
    model = getattr(predictor, "model", None)
    tracker = getattr(model, "tracker", None)
    if not callable(tracker):
        raise Refused(NO_CLICKS.format(why="this server has no segmenter"), 501)
    found, why = tracker()
    if found is None:
        raise Refused(NO_CLICKS.format(why=why), 501)
    return found, True


def describe_clicks(backends: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """For ``GET /v1/models``: whether clicks are served, from each (role, name, backend class or instance)
    (:func:`grounded.serve.engine.probe_backends`); ``available`` None while it is known only once loaded."""
    for role, name, backend in backends:
        cls = backend if isinstance(backend, type) else type(backend)
        if role == "segmenter":
            takes = bool(getattr(cls, "takes_points", False))
            return {"available": takes, "segmenter": name,
                    "why": None if takes else NO_CLICKS.format(why=f"{cls.__name__} takes no point prompts")}
        if role == "model" and hasattr(cls, "tracker"):
            return {"available": None, "segmenter": name,
                    "why": "clicks use SAM 3's tracker part where the checkpoint holds it (known once loaded)"}
    return {"available": False, "segmenter": None, "why": NO_CLICKS.format(why="this server has no segmenter")}


def decode_click(segmenter: Any, features: Features, prompt: PointPrompt, threshold: float = 0.0) -> ClickAnswer:
    """One click on image 0 of ``features``: decode, keep the best mask (see the module docstring), upscale it."""
    multimask = len(prompt.points) == 1 and prompt.box is None and prompt.mask_logits is None
    logits, iou = segmenter.decode_points(features, 0, prompt, multimask)
    best = int(iou[0].argmax())
    mask = segmenter.upscale(features, 0, logits[0, best : best + 1], threshold)[0]
    return ClickAnswer(mask, float(iou[0, best]), logits[0, best].detach().cpu())


POINTS_EXAMPLE = {
    "schema": 2, "image": "car.jpg", "width": 512, "height": 512, "image_id": "9f2c...e1", "mask_id": "4b1d0c2a9e7f3a10",
    "seconds": 0.041, "reused_image_encoding": True,
    "detections": [{"bbox_xyxy": [151.0, 92.0, 329.0, 258.0], "class_id": None, "class_name": None, "phrase": None,
                    "confidence": None, "mask_score": 0.93, "area": 21034,
                    "mask": {"size": [512, 512], "counts": "Tl`11o?1O1N..."}}],
}


def json_field(name: str, text: str, default: Any, limit: int = 65536) -> Any:
    """A JSON form field (``default`` when empty); Refused naming it when longer than ``limit`` or not JSON."""
    if not text.strip():
        return default
    if len(text) > limit:
        raise Refused(f"{name} is {len(text)} characters long; at most {limit}", 413)
    try:
        return json.loads(text)
    except ValueError:
        raise Refused(f"{name} is not valid JSON: {text[:60]!r}") from None


def rle_mask(rle: Any, hw: tuple[int, int]) -> np.ndarray:
    """A client's COCO RLE of an (H, W) image -> (H, W) bool; its size is checked before anything is decoded."""
    if not isinstance(rle, dict) or set(rle) != {"size", "counts"}:
        raise Refused('mask must be a COCO RLE {"size": [H, W], "counts": "..."} of the image')
    if list(rle["size"]) != list(hw):
        raise Refused(f"mask size {rle['size']} is not the image's [{hw[0]}, {hw[1]}]")
    try:
        return rle_to_mask(rle)
    except Exception:  # noqa: BLE001  (any malformed counts)
        raise Refused("mask counts cannot be decoded as COCO RLE") from None


def one_mask(mask, score: float):
    """One click answer as sv.Detections: its mask, the box around it (zeros when empty), the predicted IoU."""
    return sv.Detections(xyxy=np.asarray([mask_box(mask)], dtype=np.float32), mask=mask[None],
                         data={"mask_score": np.asarray([score], dtype=np.float32)})
