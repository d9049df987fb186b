"""Labelling images into record texts, one fault boundary per image; the in-process engine.

Both engines (this one and :mod:`grounded.label.ray_engine`) run the same two steps, so they write the
same bytes:

1. :meth:`Labeller.prepare` (one image, any thread or process): decode it, reduced when larger than the
   models see it (EXIF orientation applied; ``load_image`` refuses what is not an image file, or too many
   pixels, saying what it is), and make the models' view of it (:mod:`grounded.label.modelview`).
2. :meth:`Labeller.label` (a batch): one model call for the batch (``predictor.segment_batch`` where the
   predictor has it: an image's result never depends on the others of its batch, grounded/models/batching.py),
   then per image: results back to the displayed size, masks RLE-encoded one at a time, the record's JSON text
   (and, with ``soft_side``, the bytes of its soft-mask file: :mod:`grounded.label.soft`).

The fault boundary: whatever one image raises (decode, preprocessing, model, post-processing, record
encoding) becomes that image's error row (exception type + one-line reason) and the run goes on. When a
batched model call fails, its images are run again one by one, so only the poisoned image gets the row.
Out-of-memory is reported as such (and the GPU cache released); a full disk ends the run with a clear
error (:func:`grounded.label.records.write_record_text`), every finished record kept.

In-process engine (:func:`label_local`): images are decoded on a background thread ``prefetch`` batches
ahead of the models (:mod:`grounded.label.prefetch`); records are written one per image, atomically, each
after its soft-mask file when there is one.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import InputError
from grounded.io.detections_json import detections_to_json
from grounded.label.modelview import MODEL_SIDE, MaxSide, ModelView, restore, side_limit, to_model
from grounded.label.prefetch import prefetched
from grounded.label.records import error_record, record_text, write_record_text
from grounded.label.soft import soft_bytes, write_soft
from grounded.ontology import Ontology
from grounded.utils.images import image_size, load_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherFactory:
    """Builds ``grounded.Predictor(**kwargs)``: a picklable recipe, so each Ray worker loads the models once."""

    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        from grounded.pipeline.predictor import Predictor

        return Predictor(**self.kwargs)


@dataclass(frozen=True)
class Given:
    """A factory that returns a predictor built by the caller (pickled as it is when shipped to Ray)."""

    predictor: Any

    def __call__(self) -> Any:
        return self.predictor


@dataclass
class Prepared:
    """One image ready for the models: its view, or the error row it already has."""

    relative: str
    image: np.ndarray | None = None
    view: ModelView | None = None
    error: dict[str, Any] | None = None


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(type name, one-line reason) of an exception; out-of-memory said plainly."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or repr(exc)
    if isinstance(exc, MemoryError):
        return name, f"out of memory while labelling this image ({text}); it is left out, the run went on"
    if _is_gpu_oom(exc):
        return name, f"GPU out of memory ({text}); try a smaller --batch-size or --detector-size"
    return name, text


def _is_gpu_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc)


def _recover(exc: BaseException) -> None:
    """After a failed model call: give the GPU's cached blocks back when it ran out of memory."""
    torch = sys.modules.get("torch")
    if _is_gpu_oom(exc) and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def error_row(relative: str, exc: BaseException) -> dict[str, Any]:
    return error_record(relative, *describe_error(exc))


def prepare(root: str | Path, relative: str, side: Callable[[tuple[int, int]], int | None]) -> Prepared:
    """Decode and view one image, reduced to ``side(displayed (H, W))`` on its long side (None: whole); never
    raises (an ``Exception`` becomes the error row)."""
    path = Path(root) / relative
    try:
        original = image_size(path, name=relative)  # displayed (H, W), from the header
        image, view = to_model(load_image(path, name=relative, max_side=side(original)), original)
        return Prepared(relative, image, view)
    except Exception as exc:
        return Prepared(relative, error=error_row(relative, exc))


Row = tuple[str, str, bytes | None, float]  # (relative path, record text, soft-mask file or None, model seconds)


class Labeller:
    """A predictor + an ontology: batches of :class:`Prepared` images -> :data:`Row` s.

    ``max_side``: how :meth:`prepare` reduces large images (:mod:`grounded.label.modelview`; by default to what
    the predictor's models see of each). ``soft_side``: also each image's soft-mask file, the probabilities at
    that long side (None: none; the predictor must have ``check_soft_masks``: a :class:`grounded.Predictor`).
    """

    def __init__(self, predictor: Any, ontology: Ontology, max_side: MaxSide = MODEL_SIDE,
                 soft_side: int | None = None) -> None:
        self.predictor, self.ontology, self.soft_side = predictor, ontology, soft_side
        check = getattr(predictor, "check_options", None)
        if check is not None:  # a threshold the ontology sets that a backend refuses: refused once, not per image
            check(ontology=ontology)
        if soft_side is not None:  # refused before run.json is written, not per image
            if not callable(getattr(predictor, "check_soft_masks", None)):
                raise InputError(f"soft masks need a grounded.Predictor with a SAM-family segmenter; "
                                 f"{type(predictor).__name__} gives none (tiled labelling neither): leave them off")
            predictor.check_soft_masks()
        self.side = side_limit(max_side, predictor)

    def prepare(self, root: str | Path, relative: str) -> Prepared:
        return prepare(root, relative, self.side)

    def label(self, items: list[Prepared]) -> list[Row]:
        ready = [item for item in items if item.error is None]
        outputs = dict(zip((id(item) for item in ready), self._predict(ready), strict=True))
        rows = []
        for item in items:
            found, seconds = outputs.get(id(item), (None, 0.0))
            rows.append((item.relative, *self._record(item, found), seconds))
        return rows

    def _predict(self, items: list[Prepared]) -> list[tuple[Any, float]]:
        """Per item (Detections or the exception it raised, model seconds); one call for the batch."""
        if not items:
            return []
        tick = time.perf_counter()
        try:
            found = self._call([item.image for item in items])
            if len(found) != len(items):
                raise RuntimeError(f"the predictor returned {len(found)} results for {len(items)} images")
        except Exception as exc:
            _recover(exc)
            if len(items) == 1:
                return [(exc, time.perf_counter() - tick)]
            logger.warning("a batch of %d images failed (%s: %s); running them one by one",
                           len(items), type(exc).__name__, exc)
            return [self._predict([item])[0] for item in items]
        seconds = (time.perf_counter() - tick) / len(items)
        return [(detections, seconds) for detections in found]

    def _call(self, images: list[np.ndarray]) -> list[Any]:
        soft = {} if self.soft_side is None else {"soft_side": self.soft_side}  # asked for only when on
        if hasattr(self.predictor, "segment_batch"):
            return list(self.predictor.segment_batch(images, self.ontology, **soft))
        results = []
        for image in images:
            self.predictor.set_image(image)
            results.append(self.predictor.segment(self.ontology, **soft))
        return results

    def _record(self, item: Prepared, found: Any) -> tuple[str, bytes | None]:
        """(record text, soft-mask file or None) of one image; an error row (no soft file) for what failed."""
        if item.error is not None:
            return record_text(item.error), None
        try:
            if isinstance(found, BaseException):
                raise found
            detections, rles = restore(found, item.view)
            soft = None
            if self.soft_side is not None:
                from grounded.pipeline.predictor import SOFT_MASK

                probs = detections.data.pop(SOFT_MASK)  # (N, h, w) uint8 over the whole image: no restoring
                soft = soft_bytes(probs, detections.xyxy, detections.class_id, item.view.original)
            rles = None if rles is None else list(rles)  # each full-size mask made, encoded, dropped in turn
            return record_text(detections_to_json(detections, item.view.original, item.relative, rles=rles)), soft
        except Exception as exc:
            return record_text(error_row(item.relative, exc)), None


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def label_local(out: Path, root: Path, todo: list[str], labeller: Labeller, *, batch_size: int = 1,
                prefetch: int = 2, on_done: Callable[[], None] = lambda: None) -> float:
    """Label ``todo`` in this process; return the seconds spent in the predictor.

    ``prefetch``: batches decoded ahead on a background thread (0: decode in this thread).
    """
    model_seconds = 0.0
    with prefetched(lambda rel: labeller.prepare(root, rel), todo, depth=prefetch * batch_size) as items:
        for batch in chunks(items, batch_size):
            for relative, text, soft, seconds in labeller.label(batch):
                if soft is not None:
                    write_soft(out, relative, soft)  # first: a record on disk means its soft file is there
                write_record_text(out, relative, text)
                model_seconds += seconds
                on_done()
            del batch
    return model_seconds
