"""The Predictor: an image's encodings computed once, then any number of text prompts.

Usage::

    from grounded import Predictor
    predictor = Predictor()                      # IDEA-Research/grounding-dino-tiny + facebook/sam-vit-base
    predictor.set_image("truck.jpg")             # SAM image embedding + Grounding DINO backbone, once
    wheels = predictor.segment("a wheel")        # sv.Detections
    parts = predictor.segment(["car", "headlight"], box_threshold=0.3)
    batch = predictor.segment_batch(["a.jpg", "b.jpg"], "car . wheel .")   # each image as if alone

    Predictor(detector="google/owlv2-base-patch16-ensemble", segmenter="facebook/sam2.1-hiera-tiny")
    Predictor(model="facebook/sam3")             # a concept segmenter: image + text -> masks, no detector

Stateless form (as SAM's ``image_embeddings=``): ``encoding = predictor.encode([image])`` then
``predictor.segment_encoded(encoding, prompt)``; ``set_image`` / ``segment`` keep one such encoding.

Models are backends behind the interfaces of :mod:`grounded.models.interfaces`, chosen by the checkpoint's
``model_type`` (:mod:`grounded.models.registry`): a detector (boxes, classes) + a segmenter (boxes -> masks),
or one concept segmenter. Per prompt the predictor pays only for the text-dependent work (for Grounding DINO
+ SAM: the text encoder, the text-fused encoder/decoder, SAM's prompt encoder + mask decoder and mask
upsampling); the image-only work is in the encoding. Every backend's detections then go through the same
NMS and ``max_detections`` (:mod:`grounded.pipeline.selection`) and, when asked, CLIP verification.
Options a backend cannot honour (its ``refused_options``) are refused with an InputError naming it.

Output: ``sv.Detections`` with ``xyxy`` (N, 4) float32 XYXY pixels of the original image, ``mask`` (N, H, W)
bool at the original resolution, ``confidence`` (N,) detector score, ``class_id`` (N,) ontology class index,
``data["class_name"]``, ``data["phrase"]`` (the synonym that matched) and ``data["mask_score"]`` (the
segmenter's predicted IoU), most confident first. Only when asked (``segment_encoded(..., soft_side=256)``,
what ``grounded label --soft-masks`` stores): ``data["soft_mask"]`` (N, h, w) uint8, each mask's probability x 255
(the sigmoid of the segmenter's logits, before the threshold that makes ``mask``) over the whole image resized
to ``soft_side`` on its long side (never enlarged: :func:`soft_mask_size`); SAM-family segmenters only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.config import Acceleration, ModelConfig, SegmentOptions, as_kwargs, option_names, split_kwargs
from grounded.errors import InputError, OrderError
from grounded.models.acceleration import resolve_acceleration
from grounded.models.batching import encode_each
from grounded.models.detections import empty_detections
from grounded.models.interfaces import Features
from grounded.ontology import Ontology
from grounded.pipeline.padding import crop_detections, pad_image, padded_size
from grounded.pipeline.selection import select_boxes, select_masks
from grounded.utils.images import ImageInput, load_image
from grounded.utils.timing import StageTimer

logger = logging.getLogger(__name__)

Prompt = str | Sequence[str] | Ontology
SOFT_MASK = "soft_mask"  # data column of the mask probabilities, when asked (see the module docstring)


def soft_mask_size(hw: tuple[int, int], side: int) -> tuple[int, int]:
    """(H, W) -> the (h, w) soft masks of an image of that size have: long side ``side``, never enlarged."""
    scale = min(1.0, side / max(hw))
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


@dataclass
class ImageEncoding:
    """What the models compute from B images alone, per role; reusable for any prompt. Each role's features
    hold every image encoded on its own: ``encoding.detector.single(i)`` is image i's."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    detector: Features | None = None  # the detector's features (None with a concept segmenter)
    segmenter: Features | None = None  # the segmenter's image embeddings
    model: Features | None = None  # the concept segmenter's vision features
    images: list[np.ndarray] | None = None  # the RGB uint8 originals (for verify="clip")
    padded_sizes: list[tuple[int, int]] | None = None  # (H', W') the models saw (grounded.pipeline.padding)

    def __len__(self) -> int:
        return len(self.image_sizes)


class Predictor:
    """Detector + segmenter (or one concept segmenter) with per-image caching. See the module docstring."""

    def __init__(
        self,
        detector: Any = None,
        segmenter: Any = None,
        *,
        model: Any = None,
        options: SegmentOptions | None = None,
        clip: Any = None,
        adapter: Any = None,
        acceleration: Acceleration | None = None,
        **kwargs: Any,
    ) -> None:
        """Use built backends: ``detector`` (a :class:`~grounded.models.interfaces.Detector`) + ``segmenter`` (a
        :class:`~grounded.models.interfaces.Segmenter`), or ``model`` (a ConceptSegmenter) alone.

        ``options`` / keyword fields of SegmentOptions: the defaults of every :meth:`segment` call. ``clip`` /
        ``adapter``: grounded/clip/runtime.py. ``acceleration``: the speed settings the backends were built with
        (recorded by :meth:`describe`; the Predictor applies nothing to a backend).

        A role given as a name or folder, or left empty (Grounding DINO tiny + SAM ViT-B), is built first by
        :func:`grounded.pipeline.build.build_backends` from the keyword fields of ModelConfig (device, dtype,
        ``local_files_only``, ``preset``, ``autocast``, ...): ``Predictor("name", segmenter="folder")`` works as
        :meth:`from_pretrained`. A backend passed in as an object keeps whatever its caller did to it.
        """
        from grounded.pipeline.build import build_backends, is_built

        model_fields, options_given = split_kwargs(kwargs)
        self.options = options.updated(**{k: v for k, v in kwargs.items() if k in option_names(SegmentOptions)}) \
            if options is not None else options_given
        self.local_files_only = model_fields.local_files_only
        roles = {"detector": detector, "segmenter": segmenter, "model": model}
        if not (is_built(model) or (is_built(detector) and is_built(segmenter))):  # names, folders or defaults
            built = build_backends(ModelConfig(**{**as_kwargs(model_fields), **roles, "clip": clip, "adapter": adapter}))
            roles, acceleration = built.roles(), built.acceleration
        elif {k for k in kwargs if k in option_names(ModelConfig)} - {"local_files_only"}:
            raise InputError(f"{sorted(set(kwargs) & option_names(ModelConfig))} configure loading, and the backends "
                             f"given are already built: pass names or folders instead, or build the backends with "
                             f"grounded.pipeline.build.build_backends(ModelConfig(...))")
        elif model is not None and (detector is not None or segmenter is not None):
            raise InputError("a concept segmenter (model=) replaces the detector and the segmenter; give either "
                             "model or detector + segmenter, not both")
        self.detector, self.segmenter, self.model = (roles.get(r) for r in ("detector", "segmenter", "model"))
        self.acceleration = acceleration if acceleration is not None else resolve_acceleration()
        self.timer = StageTimer()
        self._own_timers()
        self.check_options(self.options)
        self._clip_args, self._clip = (clip, adapter), None  # CLIP stages (grounded/pipeline/clip_stage.py), built when wanted
        if adapter is not None or self.options.text_tokens:  # a wrong adapter, or text tokens without one: now
            self.clip_stage(self.options).check(self.options)
        self._encoding: ImageEncoding | None = None

    @classmethod
    def from_pretrained(cls, detector: str | None = None, segmenter: str | None = None, *, model: str | None = None,
                        **kwargs: Any) -> Predictor:
        """Load backends by name or folder (fields of ModelConfig in ``kwargs``) and keep the SegmentOptions
        fields of ``kwargs``: :func:`load_predictor`."""

        return load_predictor(ModelConfig(detector=detector, segmenter=segmenter, model=model), **kwargs)

    def backends(self) -> list[tuple[str, Any]]:
        """(role, backend) of the loaded models: detector + segmenter, or the concept segmenter."""
        roles = (("detector", self.detector), ("segmenter", self.segmenter), ("model", self.model))
        return [(role, backend) for role, backend in roles if backend is not None]

    def _own_timers(self) -> None:
        """Point the backends' stage timers at this predictor's (a backend shared by several predictors times
        the stages of the one using it)."""
        for _, backend in self.backends():
            backend.timer = self.timer

    @property
    def device(self) -> torch.device:
        return self.backends()[0][1].device

    def check_options(self, options: SegmentOptions | None = None, ontology: Ontology | None = None) -> None:
        """Refuse a non-default value of an option a loaded backend cannot honour, naming the backend; the
        same for a threshold ``ontology`` sets (a class's own, or its defaults'), naming the class.
        ``options``: default this predictor's."""
        options, defaults = self.options if options is None else options, SegmentOptions()
        for role, backend in self.backends():
            for name, reason in backend.refused_options.items():
                value, default = getattr(options, name), getattr(defaults, name)
                where = f"the {role} {backend.name!r} ({type(backend).__name__}): {reason}"
                if value != default:
                    raise InputError(f"{name}={value!r} is not supported by {where}; leave {name} at its default "
                                     f"({default!r}) or choose another {role}")
                changes = ontology.threshold_changes(name, defaults) if ontology is not None else []
                if changes:
                    raise InputError(f"the ontology's {'; '.join(changes[:3])}{' ...' if len(changes) > 3 else ''}: "
                                     f"not supported by {where}; remove it from the ontology or choose another {role}")

    def check_soft_masks(self) -> None:
        """Refuse soft masks (``soft_side``) where they cannot be made: a concept segmenter, or a segmenter
        without ``probabilities`` (the SAM family has it)."""
        if self.model is not None or not callable(getattr(self.segmenter, "probabilities", None)):
            backend = self.model if self.model is not None else self.segmenter
            raise InputError(f"soft masks need a detector + a SAM-family segmenter (SAM, SAM-HQ, SAM 2, EdgeTAM); "
                             f"{backend.name!r} ({type(backend).__name__}) gives none: leave soft masks off or "
                             "choose such a segmenter")

    # ------------------------------------------------------------------------------------- identity
    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the models and options (for manifests and resume checks)."""
        models = {role: backend.name for role, backend in self.backends()}
        return {
            **models,
            "dtype": str(self.backends()[0][1].dtype).replace("torch.", ""),
            "options": asdict(self.options),
            **({"acceleration": asdict(speed)} if (speed := self.acceleration.result_settings()) != Acceleration() else {}),
            **(clip.identity() if (clip := self.clip_stage()) is not None else {}),
        }

    # ------------------------------------------------------------------------------------- encoding
    def encode(self, images: Sequence[ImageInput]) -> ImageEncoding:
        """Run every image encoder once on each of several images (paths, PIL, RGB arrays, tensors).

        Images too small or too thin for the models are padded first (grounded/pipeline/padding.py); results
        are cropped back to the original size. Each image is encoded on its own (grounded/models/batching.py):
        ``encoding.<role>.single(i)`` is image i's features.
        """
        if not images:
            raise InputError("no images given: pass at least one image")
        self._own_timers()
        with self.timer("load_images"):
            arrays = [load_image(im) for im in images]
            padded = [pad_image(a) for a in arrays]
        encoding = ImageEncoding([a.shape[:2] for a in arrays], images=arrays,
                                 padded_sizes=[p.shape[:2] for p in padded])
        for role, backend in self.backends():  # each backend times its own stages (self.timer)
            setattr(encoding, role, encode_each(backend, padded))
        return encoding

    def model_side(self, hw: tuple[int, int]) -> int:
        """The long side an (H, W) image can be reduced to and still give every loaded model all the pixels it
        uses: on both axes no fewer than any of them resizes it to (their ``input_size``); at most max(H, W).

        Grounding DINO + SAM (800 / 1333 and 1024): an H x W = 3000 x 4000 photo -> 1067 (Grounding DINO's
        800 x 1066), 2000 x 6000 -> 1333. grounded.label decodes large images reduced to it.
        """
        h, w = hw
        ph, pw = padded_size((h, w))
        side = max(h, w)
        needed = max(max(-(-rh * side // ph), -(-rw * side // pw))  # ceil, in integers
                     for _, backend in self.backends() for rh, rw in [backend.input_size((ph, pw)).resized])
        return min(side, needed)

    def set_image(self, image: ImageInput) -> None:
        """Compute and keep the encodings of ``image``; later ``segment`` calls reuse them."""
        self._encoding = None  # a failed load must not leave the previous image's encodings in place
        self._encoding = self.encode([image])

    def reset_image(self) -> None:
        self._encoding = None

    @property
    def is_image_set(self) -> bool:
        return self._encoding is not None

    # ------------------------------------------------------------------------------------- prompting
    def segment(self, prompt: Prompt, **options: Any) -> sv.Detections:
        """Segment every instance of ``prompt`` in the image given to :meth:`set_image`."""
        if self._encoding is None:
            raise OrderError("no image set: call predictor.set_image(image) before predictor.segment(prompt)")
        return self.segment_encoded(self._encoding, prompt, **options)[0]

    def segment_batch(self, images: Sequence[ImageInput], prompt: Prompt, **options: Any) -> list[sv.Detections]:
        """Segment ``prompt`` in several images in one call; each image's result is exactly what it gets alone
        (its own forward passes: grounded/models/batching.py)."""
        return self.segment_encoded(self.encode(images), prompt, **options)

    def segment_encoded(self, encoding: ImageEncoding, prompt: Prompt, *, soft_side: int | None = None,
                        **options: Any) -> list[sv.Detections]:
        """Stateless form: segment ``prompt`` in every image of ``encoding``; one Detections per image.
        ``soft_side``: also give ``data["soft_mask"]`` at that long side (module docstring; :meth:`check_soft_masks`)."""
        if soft_side is not None:
            self.check_soft_masks()
        opts = self.options.updated(**options)
        if soft_side is not None and opts.text_tokens == "only":
            raise InputError("soft masks need the detector's boxes; text_tokens='only' has none: leave one of them off")
        ontology = Ontology.from_prompt(prompt)
        self._own_timers()
        self.check_options(opts, ontology)
        clip = self.clip_stage(opts)
        if clip is not None:
            clip.check(opts)  # refuse text tokens without an adapter before any work
        found = [self._cropped(self._found(encoding, i, ontology, opts, clip, soft_side), encoding, i)
                 for i in range(len(encoding))]
        if clip is None:
            return found
        return [clip.verified(f, encoding.images[i] if encoding.images else None, ontology, opts)
                for i, f in enumerate(found)]

    def _found(self, encoding: ImageEncoding, i: int, ontology: Ontology, opts: SegmentOptions,
               clip: Any = None, soft_side: int | None = None) -> sv.Detections:
        """Image ``i``'s detections, computed on its own (grounded/models/batching.py)."""
        if opts.text_tokens == "only":  # whole-image text queries through the adapter: no detector
            return clip.text_only(encoding.segmenter.single(i), ontology, opts)
        if self.model is not None:
            return select_masks(select_boxes(self.model.segment(encoding.model.single(i), ontology, opts)[0], opts),
                                opts)
        boxes = select_boxes(self.detector.detect(encoding.detector.single(i), ontology, opts)[0], opts)
        decode = clip.decoder(opts) if clip is not None else None
        soft = None
        if soft_side is not None:  # (the padded frame's size, the image's) at the same scale: cropped like masks
            hw = encoding.image_sizes[i]
            scale = min(1.0, soft_side / max(hw))
            frame = (encoding.padded_sizes or encoding.image_sizes)[i]
            soft = (tuple(max(1, round(v * scale)) for v in frame), soft_mask_size(hw, soft_side))
        return select_masks(self._add_masks(encoding.segmenter.single(i), boxes, opts, decode, soft), opts)

    def clip_stage(self, opts: SegmentOptions | None = None):
        """The CLIP stages (:class:`grounded.pipeline.clip_stage.ClipStage`) when ``opts`` (default this predictor's) or
        the predictor's clip / adapter call for them, built on first use; else None."""
        opts = self.options if opts is None else opts
        if self._clip is None and (opts.text_tokens or opts.verify or self._clip_args != (None, None)):
            from grounded.pipeline.clip_stage import ClipStage  # imported only when used

            self._clip = ClipStage(self, *self._clip_args)
        return self._clip

    def _cropped(self, found: sv.Detections, encoding: ImageEncoding, i: int) -> sv.Detections:
        """Back to the original image size when it was padded."""
        hw = encoding.image_sizes[i]
        if encoding.padded_sizes is not None and tuple(encoding.padded_sizes[i]) != tuple(hw):
            found = crop_detections(found, hw)
        return found

    def _add_masks(self, features: Features, found: sv.Detections, opts: SegmentOptions,
                   decode: Any = None, soft: tuple[tuple[int, int], tuple[int, int]] | None = None) -> sv.Detections:
        """The segmenter's mask for each box on one image's ``features`` (the best of K by predicted IoU),
        ``sam_box_batch`` boxes a call; ``decode(features, 0, boxes, phrases, multimask)``: a stage's decoder
        (box + text prompts) instead. ``soft``: (frame (h, w), kept (h, w)): also the masks' probabilities, at
        the frame's size, kept top-left (``data["soft_mask"]``, uint8)."""
        if len(found) == 0:
            found = empty_detections(features.image_sizes[0])
            if soft is not None:
                found.data[SOFT_MASK] = np.zeros((0, *soft[1]), dtype=np.uint8)
            return found
        masks, scores, probabilities = [], [], []
        for start in range(0, len(found), opts.sam_box_batch):
            chunk = found.xyxy[start : start + opts.sam_box_batch]
            if decode is not None:  # e.g. box + the adapter's tokens for each detection's phrase (grounded.clip)
                phrases = list(found.data["phrase"][start : start + opts.sam_box_batch])
                logits, iou = decode(features, 0, chunk, phrases, opts.multimask)
            else:
                logits, iou = self.segmenter.decode(features, 0, chunk, opts.multimask)
            best = iou.argmax(dim=1)  # K = 1 without multimask
            pick = torch.arange(len(best))
            logits, iou = logits[pick, best], iou[pick, best]
            masks.append(self.segmenter.upscale(features, 0, logits, opts.mask_threshold))
            scores.append(iou.cpu().numpy())
            if soft is not None:
                (h, w) = soft[1]
                p = self.segmenter.probabilities(features, 0, logits, soft[0])[:, :h, :w]
                probabilities.append(np.rint(p * 255.0).astype(np.uint8))
        found.mask = np.concatenate(masks, axis=0)
        found.data["mask_score"] = np.concatenate(scores).astype(np.float32)
        if soft is not None:
            found.data[SOFT_MASK] = np.concatenate(probabilities, axis=0)
        return found


def load_predictor(config: ModelConfig | None = None, /, **kwargs: Any) -> Predictor:
    """A :class:`grounded.Predictor` built from ``config`` (+ keyword fields of ModelConfig and SegmentOptions:
    ``kwargs`` override ``config``'s fields and set the predictor's options); grounded/pipeline/build.py
    says how names, folders and settings become backends."""
    from grounded.pipeline.build import build_backends

    _, options = split_kwargs(kwargs)  # validates every name and value
    fields = option_names(ModelConfig)
    config = ModelConfig(**{**as_kwargs(config or ModelConfig()), **{k: v for k, v in kwargs.items() if k in fields}})
    backends = build_backends(config)
    return Predictor(**backends.roles(), options=options, clip=config.clip, adapter=config.adapter,
                     acceleration=backends.acceleration, local_files_only=config.local_files_only)
