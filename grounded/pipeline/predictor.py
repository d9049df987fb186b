"""The Predictor: an image's encodings computed once, then any number of text prompts.

Usage::

    from grounded import Predictor
    predictor = Predictor()                      # IDEA-Research/grounding-dino-tiny + facebook/sam-vit-base
    predictor.set_image("truck.jpg")             # SAM image embedding + Grounding DINO backbone, once
    wheels = predictor.segment("a wheel")        # sv.Detections
    parts = predictor.segment(["car", "headlight"], box_threshold=0.3)
    batch = predictor.segment_batch(["a.jpg", "b.jpg"], "car . wheel .")   # one batched pass per model

Stateless form (as SAM's ``image_embeddings=``): ``encoding = predictor.encode([image])`` then
``predictor.segment_encoded(encoding, prompt)``; ``set_image`` / ``segment`` keep one such encoding.

Per prompt the predictor pays for: the text encoder, Grounding DINO's text-fused encoder/decoder (these
depend on the text, so they cannot be cached), SAM's prompt encoder + mask decoder, and mask upsampling.
All phrases of a prompt share one caption and one pass while they fit in the text encoder's token limit;
longer prompts become several captions run as one batch.

Output: ``sv.Detections`` with ``xyxy`` (N, 4) float32 XYXY pixels of the original image, ``mask`` (N, H, W)
bool at the original resolution, ``confidence`` (N,) detector score, ``class_id`` (N,) ontology class index,
``data["class_name"]``, ``data["phrase"]`` (the synonym that matched) and ``data["mask_score"]`` (SAM's
predicted IoU), most confident first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
import torch

from grounded.config import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, SegmentOptions, option_names, split_kwargs
from grounded.errors import InputError, OrderError
from grounded.models.acceleration import Acceleration, apply_acceleration, resolve_acceleration
from grounded.models.detections import empty_detections
from grounded.models.detector import DetectorImageFeatures, GroundingDinoDetector
from grounded.models.loading import resolve_device, resolve_dtype
from grounded.models.segmenter import SamSegmenter
from grounded.ontology import Ontology
from grounded.pipeline.captions import Caption, plan_captions
from grounded.pipeline.selection import apply_nms, select_boxes, top_k
from grounded.utils.images import ImageInput, load_image
from grounded.utils.timing import StageTimer

logger = logging.getLogger(__name__)

Prompt = str | Sequence[str] | Ontology


@dataclass
class ImageEncoding:
    """What the models compute from B images alone; reusable for any prompt."""

    image_sizes: list[tuple[int, int]]  # (H, W) of each original image
    detector: DetectorImageFeatures  # Grounding DINO backbone features of the batch
    sam_embeddings: torch.Tensor  # (B, 256, 64, 64)
    sam_reshaped_sizes: list[tuple[int, int]]  # (h, w) of each image inside SAM's padded input
    images: list[np.ndarray] | None = None  # the RGB uint8 originals (for verify="clip")


class Predictor:
    """Grounding DINO + SAM with per-image caching. See the module docstring."""

    def __init__(
        self,
        detector: str = DEFAULT_DETECTOR,
        segmenter: str = DEFAULT_SEGMENTER,
        *,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        clip: Any = None,
        adapter: Any = None,
        **options: Any,
    ) -> None:
        """Load both models (names or local folders) and keep ``options`` (fields of SegmentOptions).

        Speed options (fields of ModelConfig; those that change results are off by default): ``preset``
        ("fast"/"accurate"), ``autocast``, ``quantize``, ``detector_size``, ``threads``, and ``retain_memory`` /
        ``cpu_kernels`` (same maths; on for CPU models unless False); see grounded/models/acceleration.py.
        """
        model_options, self.options = split_kwargs(options)
        self.model_config = replace(model_options, detector=detector, segmenter=segmenter, device=device,
                                    dtype=dtype, local_files_only=local_files_only)
        mc = self.model_config
        self.acceleration = resolve_acceleration(mc.preset, **{k: getattr(mc, k) for k in option_names(Acceleration)})
        dev, dt = resolve_device(device), resolve_dtype(dtype)
        self.detector = GroundingDinoDetector.from_pretrained(detector, dev, dt, local_files_only)
        self.segmenter = SamSegmenter.from_pretrained(segmenter, dev, dt, local_files_only)
        # CLIP in the loop (grounded.clip), imported only when used; an adapter for another SAM is refused now
        self._clip_args, self._clip_tools = (clip, adapter), None
        if adapter is not None:
            self.clip_tools()
        apply_acceleration(self.acceleration, self.detector, self.segmenter)
        self.timer = StageTimer()
        self._encoding: ImageEncoding | None = None
        self._captions: dict[str, list[Caption]] = {}

    # ------------------------------------------------------------------------------------- identity
    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the models and options (for manifests and resume checks)."""
        return {
            "detector": self.model_config.detector,
            "segmenter": self.model_config.segmenter,
            "dtype": str(self.detector.dtype).replace("torch.", ""),
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
        """Run both image encoders once over a batch of images (paths, PIL, RGB arrays, tensors)."""
        if not images:
            raise InputError("no images given: pass at least one image")
        with self.timer("load_images"):
            arrays = [load_image(im) for im in images]
        with self.timer("detector.preprocess"):
            pixel_values, pixel_mask = self.detector.preprocess(arrays)
        with self.timer("detector.backbone"):
            features = self.detector.encode_images(pixel_values, pixel_mask)
        with self.timer("sam.preprocess"):
            sam_pixels, _, reshaped = self.segmenter.preprocess(arrays)
        with self.timer("sam.image_encoder"):
            embeddings = self.segmenter.embed(sam_pixels)
        return ImageEncoding([a.shape[:2] for a in arrays], features, embeddings, reshaped, arrays)

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
        """Segment ``prompt`` in several images, batched through both image encoders and the detector."""
        return self.segment_encoded(self.encode(images), prompt, **options)

    def captions_for(self, ontology: Ontology) -> list[Caption]:
        key = ontology.fingerprint()
        if key not in self._captions:
            self._captions[key] = plan_captions(ontology, self.detector.tokenizer, self.detector.max_text_len)
        return self._captions[key]

    def segment_encoded(self, encoding: ImageEncoding, prompt: Prompt, **options: Any) -> list[sv.Detections]:
        """Stateless form: segment ``prompt`` in every image of ``encoding``; one Detections per image."""
        opts = self.options.updated(**options)
        ontology = Ontology.from_prompt(prompt)
        if opts.text_tokens == "only":  # whole-image text queries through the adapter: no detector
            tools = self.clip_tools(opts)
            return [self._verified(tools.segment_text(encoding.sam_embeddings[i : i + 1], hw, encoding.sam_reshaped_sizes[i],
                                                      ontology, opts.multimask, opts.mask_threshold), encoding, i, ontology, opts)
                    for i, hw in enumerate(encoding.image_sizes)]
        if opts.text_tokens or opts.verify:
            self.clip_tools(opts)  # refuse text tokens without an adapter before any work
        captions = self.captions_for(ontology)
        n_images = len(encoding.image_sizes)
        rows = [(i, c) for i in range(n_images) for c in range(len(captions))]
        with self.timer("detector.text_fusion_decoder"):
            probs, boxes = self.detector.detect(
                encoding.detector, [captions[c].input_ids for _, c in rows], [i for i, _ in rows]
            )
        results = []
        for i, hw in enumerate(encoding.image_sizes):
            row_ids = [r for r, (img, _) in enumerate(rows) if img == i]
            with self.timer("postprocess"):
                found = select_boxes(probs[row_ids], boxes[row_ids], captions, ontology, opts, hw)
            results.append(self._verified(self._add_masks(encoding, i, found, opts), encoding, i, ontology, opts))
        return results

    def clip_tools(self, opts: SegmentOptions | None = None):
        """CLIP + text-prompt adapter (:class:`grounded.clip.runtime.ClipTools`), built on first use."""
        if self._clip_tools is None:
            from grounded.clip.runtime import ClipTools

            self._clip_tools = ClipTools(self.segmenter, *self._clip_args, local_files_only=self.model_config.local_files_only)
        if opts is not None:
            self._clip_tools.check(opts.text_tokens)
        return self._clip_tools

    def _verified(self, found: sv.Detections, encoding: ImageEncoding, i: int, ontology: Ontology,
                  opts: SegmentOptions) -> sv.Detections:
        if opts.verify != "clip":
            return found
        with self.timer("clip.verify"):
            return self.clip_tools().verify(found, encoding.images[i] if encoding.images else None, ontology)

    def _add_masks(self, encoding: ImageEncoding, i: int, found: sv.Detections, opts: SegmentOptions) -> sv.Detections:
        hw = encoding.image_sizes[i]
        if len(found) == 0:
            return empty_detections(hw)
        masks, scores = [], []
        for start in range(0, len(found), opts.sam_box_batch):
            chunk = found.xyxy[start : start + opts.sam_box_batch]
            with self.timer("sam.prompt_mask_decoder"):
                if opts.text_tokens:  # box + the adapter's tokens for each detection's phrase (grounded.clip)
                    phrases = list(found.data["phrase"][start : start + opts.sam_box_batch])
                    logits, iou = self.clip_tools().decode(encoding.sam_embeddings[i : i + 1], chunk, hw, phrases, opts.multimask)
                else:
                    logits, iou = self.segmenter.decode(encoding.sam_embeddings[i : i + 1], chunk, hw, opts.multimask)
                best = iou.argmax(dim=1)  # K = 1 without multimask
                pick = torch.arange(len(best))
                logits, iou = logits[pick, best], iou[pick, best]
            with self.timer("mask_upsampling"):
                masks.append(self.segmenter.upscale(logits, hw, encoding.sam_reshaped_sizes[i], opts.mask_threshold))
            scores.append(iou.cpu().numpy())
        found.mask = np.concatenate(masks, axis=0)
        found.data["mask_score"] = np.concatenate(scores).astype(np.float32)
        if opts.nms_on == "mask":
            with self.timer("postprocess"):
                found = top_k(apply_nms(found, opts), opts.max_detections)
        return found
