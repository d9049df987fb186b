"""Configuration as plain dataclasses. Every default is the one used when nothing is passed.

``ModelConfig`` says which models to load and where to run them; ``SegmentOptions`` says how detections are
selected. ``Predictor(**kwargs)`` and ``grounded.segment(image, prompt, **kwargs)`` accept the fields of both
as keyword arguments; ``Predictor.segment(prompt, **options)`` overrides ``SegmentOptions`` fields per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from grounded.errors import InputError

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"  # or "IDEA-Research/grounding-dino-base", or a folder
DEFAULT_SEGMENTER = "facebook/sam-vit-base"  # any SamModel checkpoint: sam-vit-large/huge, SlimSAM, a folder

NMS_MODES = ("class", "agnostic", "none")
NMS_ON = ("box", "mask")
TEXT_TOKENS = (False, True, "only")  # SegmentOptions.text_tokens
VERIFY_MODES = (None, "clip")  # SegmentOptions.verify
PRESET_NAMES = ("accurate", "fast")  # speed presets, defined in grounded/models/acceleration.py
AUTOCAST_CHOICES = ("auto", "bfloat16", "float16")
QUANTIZE_CHOICES = ("int8",)


@dataclass(frozen=True)
class ModelConfig:
    detector: str = DEFAULT_DETECTOR  # Grounding DINO: Hugging Face name or local folder
    segmenter: str = DEFAULT_SEGMENTER  # SAM: Hugging Face name or local folder
    device: str | None = None  # None: "cuda" when available, else "cpu" (decided when models load)
    dtype: str | None = None  # None: float32; "float16"/"bfloat16" cast the weights
    local_files_only: bool = False  # True: never try the network, only the cache or folders
    # Speed (grounded/models/acceleration.py); None everywhere = float32 at the checkpoint's input size.
    preset: str | None = None  # "accurate" (float32, 800) or "fast" (512 short side, autocast="auto")
    autocast: str | None = None  # "auto" (bf16 where the CPU/GPU has it natively), "bfloat16", "float16"
    quantize: str | None = None  # "int8": dynamic int8 quantisation of all linear layers (CPU)
    detector_size: int | None = None  # Grounding DINO input short side (checkpoint default 800)
    threads: int | None = None  # torch.set_num_threads when the models load (process-wide)
    retain_memory: bool | None = None  # glibc keeps freed memory (no page faults); None: on for CPU models
    cpu_kernels: bool | None = None  # same maths in CPU-faster ops (deformable attention); None: on for CPU


@dataclass(frozen=True)
class SegmentOptions:
    box_threshold: float = 0.35  # keep a box when its best token probability exceeds this
    text_threshold: float = 0.25  # ... and its best token inside the matched phrase exceeds this
    class_box_thresholds: dict[str, float] = field(default_factory=dict)  # per class name; beats the ontology's
    class_text_thresholds: dict[str, float] = field(default_factory=dict)
    nms: str = "class"  # "class": per class; "agnostic": across classes; "none"
    nms_on: str = "box"  # "box": before SAM (cheaper); "mask": after SAM, on mask IoU
    nms_iou: float = 0.5  # IoU above which the lower-scored detection is dropped
    multimask: bool = False  # True: SAM predicts 3 masks per box and the one with the best predicted IoU is kept
    max_detections: int = 100  # per image, highest confidence first
    mask_threshold: float = 0.0  # SAM logit threshold for a mask pixel
    sam_box_batch: int = 64  # boxes per mask-decoder call (bounds memory, not results)
    # CLIP in the loop (grounded/clip); the defaults leave results exactly as without CLIP.
    text_tokens: bool | str = False  # True: box + text tokens (needs an adapter); "only": text alone, no detector
    verify: str | None = None  # "clip": CLIP checks each label on its masked crop (grounded/clip/verify.py)

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold", "nms_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.nms not in NMS_MODES:
            raise InputError(f"nms must be one of {NMS_MODES}, got {self.nms!r}")
        if self.nms_on not in NMS_ON:
            raise InputError(f"nms_on must be one of {NMS_ON}, got {self.nms_on!r}")
        if not isinstance(self.max_detections, int) or self.max_detections < 1:
            raise InputError(f"max_detections must be a positive integer, got {self.max_detections!r}")
        if not isinstance(self.sam_box_batch, int) or self.sam_box_batch < 1:
            raise InputError(f"sam_box_batch must be a positive integer, got {self.sam_box_batch!r}")
        if self.text_tokens not in TEXT_TOKENS:
            raise InputError(f"text_tokens must be one of {TEXT_TOKENS}, got {self.text_tokens!r}")
        if self.verify not in VERIFY_MODES:
            raise InputError(f"verify must be one of {VERIFY_MODES}, got {self.verify!r}")

    def updated(self, **overrides: Any) -> SegmentOptions:
        """A copy with ``overrides`` applied; unknown names raise an error listing the valid ones."""
        check_option_names(overrides, SegmentOptions)
        return replace(self, **overrides) if overrides else self


def option_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def check_option_names(kwargs: dict[str, Any], *classes: type) -> None:
    valid = set().union(*(option_names(c) for c in classes))
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise InputError(f"unknown option(s) {unknown}; valid options: {sorted(valid)}")


def split_kwargs(kwargs: dict[str, Any]) -> tuple[ModelConfig, SegmentOptions]:
    """Split mixed keyword arguments into a ModelConfig and SegmentOptions (unknown names are an error)."""
    check_option_names(kwargs, ModelConfig, SegmentOptions)
    model = ModelConfig(**{k: v for k, v in kwargs.items() if k in option_names(ModelConfig)})
    options = SegmentOptions(**{k: v for k, v in kwargs.items() if k in option_names(SegmentOptions)})
    return model, options
