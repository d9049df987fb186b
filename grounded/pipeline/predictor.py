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
segmenter's predicted IoU), most confident first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.config import Acceleration, ModelConfig, SegmentOptions, as_kwargs, split_kwargs
from grounded.errors import InputError, OrderError
from grounded.models.acceleration import apply_acceleration, resolve_acceleration
from grounded.models.batching import encode_each
from grounded.models.detections import empty_detections
from grounded.models.interfaces import Features
from grounded.models.loading import resolve_device, resolve_dtype
from grounded.models.registry import load_backend
from grounded.ontology import Ontology
from grounded.pipeline.padding import crop_detections, pad_image, padded_size
from grounded.pipeline.selection import select_boxes, select_masks
from grounded.utils.images import ImageInput, load_image
from grounded.utils.timing import StageTimer

logger = logging.getLogger(__name__)

Prompt = str | Sequence[str] | Ontology


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
        detector: str | None = None,
        segmenter: str | None = None,
        *,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        clip: Any = None,
        adapter: Any = None,
        **options: Any,
    ) -> None:
        """Load the backends (names or local folders) and keep ``options`` (fields of SegmentOptions).

        ``detector`` / ``segmenter`` default to Grounding DINO tiny + SAM ViT-B; ``model`` (a concept segmenter,
        e.g. ``"facebook/sam3"``) replaces both and excludes them. Speed options (fields of ModelConfig; those that
        change results are off by default): ``preset`` ("fast"/"accurate"), ``autocast``, ``quantize``,
        ``detector_size``, ``threads``, and ``retain_memory`` / ``cpu_kernels`` (same maths; on for CPU models
        unless False); see grounded/models/acceleration.py. ``clip`` / ``adapter``: grounded/clip/runtime.py.
        """
        model_options, self.options = split_kwargs(options)
        self.model_config = ModelConfig(**{**as_kwargs(model_options), "detector": detector, "segmenter": segmenter,
                                           "model": model, "device": device, "dtype": dtype,
                                           "local_files_only": local_files_only, "clip": clip,
                                           "adapter": adapter}).resolved()
        mc = self.model_config
        self.acceleration = resolve_acceleration(mc.preset, **as_kwargs(mc.acceleration))
        dev, dt = resolve_device(device), resolve_dtype(dtype)
        self.detector = self.segmenter = self.model = None
        if mc.model is not None:
            self.model = load_backend(mc.model, "model", dev, dt, local_files_only)
        else:
            self.detector = load_backend(mc.detector, "detector", dev, dt, local_files_only)
            self.segmenter = load_backend(mc.segmenter, "segmenter", dev, dt, local_files_only)
        self.timer = StageTimer()
        for _, backend in self.backends():
            backend.timer = self.timer
        self.check_options(self.options)
        # CLIP in the loop (grounded.clip), imported only when used; an adapter for another SAM is refused now
        self._clip_args, self._clip_tools = (clip, adapter), None
        if adapter is not None:
            self.check_options(SegmentOptions(text_tokens=True))  # the adapter is for text tokens
        if adapter is not None or self.options.text_tokens:
            self.clip_tools(self.options)  # text tokens without an adapter are refused now, not per image
        apply_acceleration(self.acceleration, *(b for _, b in self.backends()))
        self._encoding: ImageEncoding | None = None

    def backends(self) -> list[tuple[str, Any]]:
        """(role, backend) of the loaded models: detector + segmenter, or the concept segmenter."""
        roles = (("detector", self.detector), ("segmenter", self.segmenter), ("model", self.model))
        return [(role, backend) for role, backend in roles if backend is not None]

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

    # ------------------------------------------------------------------------------------- identity
    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the models and options (for manifests and resume checks)."""
        mc = self.model_config
        models = {"model": mc.model} if mc.model is not None else {"detector": mc.detector, "segmenter": mc.segmenter}
        return {
            **models,
            "dtype": str(self.backends()[0][1].dtype).replace("torch.", ""),
            "options": asdict(self.options),
            **({"acceleration": asdict(speed)} if (speed := self.acceleration.result_settings()) != Acceleration() else {}),
            **self._clip_identity(),
        }

    def _clip_identity(self) -> dict[str, Any]:
        """CLIP / adapter settings for :meth:`describe`; the adapter by its weights' sha256, not its path."""
        clip, adapter = self._clip_args
        out: dict[str, Any] = {}
        if clip is not None:
            out["clip"] = clip if isinstance(clip, str) else type(clip).__name__
        if adapter is not None:
            if isinstance(adapter, (str, Path)):
                from grounded.clip.adapter import read_adapter_record

                weights = read_adapter_record(adapter)[1]
                out["adapter"] = hashlib.sha256(weights.read_bytes()).hexdigest()
            else:
                out["adapter"] = type(adapter).__name__
        return out

    # ------------------------------------------------------------------------------------- encoding
    def encode(self, images: Sequence[ImageInput]) -> ImageEncoding:
        """Run every image encoder once on each of several images (paths, PIL, RGB arrays, tensors).

        Images too small or too thin for the models are padded first (grounded/pipeline/padding.py); results
        are cropped back to the original size. Each image is encoded on its own (grounded/models/batching.py):
        ``encoding.<role>.single(i)`` is image i's features.
        """
        if not images:
            raise InputError("no images given: pass at least one image")
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

    def segment_encoded(self, encoding: ImageEncoding, prompt: Prompt, **options: Any) -> list[sv.Detections]:
        """Stateless form: segment ``prompt`` in every image of ``encoding``; one Detections per image."""
        opts = self.options.updated(**options)
        ontology = Ontology.from_prompt(prompt)
        self.check_options(opts, ontology)
        if opts.text_tokens or opts.verify:
            self.clip_tools(opts)  # refuse text tokens without an adapter before any work
        return [self._finished(self._found(encoding, i, ontology, opts), encoding, i, ontology, opts)
                for i in range(len(encoding))]

    def _found(self, encoding: ImageEncoding, i: int, ontology: Ontology, opts: SegmentOptions) -> sv.Detections:
        """Image ``i``'s detections, computed on its own (grounded/models/batching.py)."""
        if opts.text_tokens == "only":  # whole-image text queries through the adapter: no detector
            return self.clip_tools(opts).segment_text(encoding.segmenter.single(i), 0, ontology, opts.multimask,
                                                      opts.mask_threshold)
        if self.model is not None:
            return select_masks(select_boxes(self.model.segment(encoding.model.single(i), ontology, opts)[0], opts),
                                opts)
        boxes = select_boxes(self.detector.detect(encoding.detector.single(i), ontology, opts)[0], opts)
        return select_masks(self._add_masks(encoding.segmenter.single(i), boxes, opts), opts)

    def clip_tools(self, opts: SegmentOptions | None = None):
        """CLIP + text-prompt adapter (:class:`grounded.clip.runtime.ClipTools`), built on first use."""
        if self._clip_tools is None:
            from grounded.clip.runtime import ClipTools

            self._clip_tools = ClipTools(self.segmenter, *self._clip_args, device=self.device,
                                         local_files_only=self.model_config.local_files_only)
        if opts is not None:
            self._clip_tools.check(opts.text_tokens)
        return self._clip_tools

    def _finished(self, found: sv.Detections, encoding: ImageEncoding, i: int, ontology: Ontology,
                  opts: SegmentOptions) -> sv.Detections:
        """Back to the original image size (when it was padded), then CLIP verification when asked."""
        hw = encoding.image_sizes[i]
        if encoding.padded_sizes is not None and tuple(encoding.padded_sizes[i]) != tuple(hw):
            found = crop_detections(found, hw)
        if opts.verify != "clip":
            return found
        with self.timer("clip.verify"):
            return self.clip_tools().verify(found, encoding.images[i] if encoding.images else None, ontology)

    def _add_masks(self, features: Features, found: sv.Detections, opts: SegmentOptions) -> sv.Detections:
        """The segmenter's mask for each box on one image's ``features`` (the best of K by predicted IoU),
        ``sam_box_batch`` boxes a call."""
        if len(found) == 0:
            return empty_detections(features.image_sizes[0])
        masks, scores = [], []
        for start in range(0, len(found), opts.sam_box_batch):
            chunk = found.xyxy[start : start + opts.sam_box_batch]
            if opts.text_tokens:  # box + the adapter's tokens for each detection's phrase (grounded.clip)
                phrases = list(found.data["phrase"][start : start + opts.sam_box_batch])
                logits, iou = self.clip_tools().decode(features, 0, chunk, phrases, opts.multimask)
            else:
                logits, iou = self.segmenter.decode(features, 0, chunk, opts.multimask)
            best = iou.argmax(dim=1)  # K = 1 without multimask
            pick = torch.arange(len(best))
            logits, iou = logits[pick, best], iou[pick, best]
            masks.append(self.segmenter.upscale(features, 0, logits, opts.mask_threshold))
            scores.append(iou.cpu().numpy())
        found.mask = np.concatenate(masks, axis=0)
        found.data["mask_score"] = np.concatenate(scores).astype(np.float32)
        return found

