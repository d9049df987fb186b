"""Configuration as plain dataclasses: the one place each setting is declared, with its default.

``ModelConfig`` says which models to load, where and how fast (it extends ``Acceleration``, the speed settings);
``SegmentOptions`` says how detections are selected. ``Predictor(**kwargs)`` and
``grounded.segment(image, prompt, **kwargs)`` accept the fields of both as keyword arguments;
``Predictor.segment(prompt, **options)`` overrides ``SegmentOptions`` fields per call. The command line's
flags are generated from these fields (grounded/cli/common.py), so a new field reaches every command.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from grounded.errors import InputError

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"  # or "IDEA-Research/grounding-dino-base", or a folder
DEFAULT_SEGMENTER = "facebook/sam-vit-base"  # any SamModel checkpoint: sam-vit-large/huge, SlimSAM, a folder
# A concept segmenter (``model=``, e.g. "facebook/sam3") replaces both; the registry (grounded/models/registry.py)
# picks each backend from the checkpoint's model_type.

NMS_MODES = ("class", "agnostic", "none")
NMS_ON = ("box", "mask")
TEXT_TOKENS = (False, True, "only")  # SegmentOptions.text_tokens
VERIFY_MODES = (None, "clip")  # SegmentOptions.verify
AUTOCAST_CHOICES = ("auto", "bfloat16", "float16")
QUANTIZE_CHOICES = ("int8",)


@dataclass(frozen=True)
class Acceleration:
    """Speed settings (grounded/models/acceleration.py). None everywhere = float32 at the checkpoint's input
    size; ``retain_memory`` and ``cpu_kernels`` keep the maths and are on for CPU models unless False."""

    autocast: str | None = None  # None: float32; "auto" (bf16 where the CPU/GPU has it natively), "bfloat16", "float16"
    quantize: str | None = None  # "int8": dynamic int8 quantisation of all linear layers (CPU, float32 weights)
    detector_size: int | None = None  # detector input short side; None: the checkpoint's (800 for Grounding DINO)
    threads: int | None = None  # torch.set_num_threads when the models load (process-wide); None: leave as is
    retain_memory: bool | None = None  # glibc keeps freed memory (no page faults); None: on for CPU models
    cpu_kernels: bool | None = None  # same maths in CPU-faster ops (deformable attention); None: on for the CPU
    compile: bool | None = None  # torch.compile (inductor) each backend's compile_modules (SAM's mask decoder):
    #   equal up to float rounding; the first call compiles (tens of seconds on a CPU); None/False: eager

    def __post_init__(self) -> None:
        if self.autocast is not None and self.autocast not in AUTOCAST_CHOICES:
            raise InputError(f"autocast must be one of {AUTOCAST_CHOICES} or None, got {self.autocast!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_CHOICES:
            raise InputError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {self.quantize!r}")
        for name in ("retain_memory", "cpu_kernels", "compile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InputError(f"{name} must be True, False or None, got {value!r}")
        for name in ("detector_size", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"{name} must be a positive integer or None, got {value!r}")

    def result_settings(self) -> Acceleration:
        """These settings less the ones that keep the maths (``retain_memory``, ``cpu_kernels``, ``compile``):
        what an identity for resume checks should record (a plain Acceleration, whatever subclass ``self`` is)."""
        return Acceleration(**{f.name: getattr(self, f.name) for f in fields(Acceleration)
                               if f.name not in ("retain_memory", "cpu_kernels", "compile")})


# Speed presets: each bundles opt-in settings; explicit settings override the preset's. A backend takes the
# preset settings it supports and skips the others, never failing on them (grounded/models/acceleration.py):
# ``autocast`` applies to every backend, ``detector_size`` only to the detectors of RESIZABLE_INPUT.
PRESETS: dict[str, Acceleration] = {
    "accurate": Acceleration(),  # float32 at each checkpoint's input size (800 short side for Grounding DINO)
    "fast": Acceleration(autocast="auto", detector_size=512),
}
PRESET_NAMES = tuple(PRESETS)
RESIZABLE_INPUT = ("grounding-dino", "mm-grounding-dino")  # model_types whose detector takes detector_size


@dataclass(frozen=True)
class ModelConfig(Acceleration):
    """Which models to load, where, and how fast (the :class:`Acceleration` fields plus these)."""

    detector: str | None = None  # open-vocabulary detector, name or folder; None: DEFAULT_DETECTOR (unless model)
    segmenter: str | None = None  # promptable segmenter, name or folder; None: DEFAULT_SEGMENTER (unless model)
    model: str | None = None  # concept segmenter (SAM 3), name or folder: replaces detector + segmenter
    device: str | None = None  # None (or "auto"): "cuda" when available, else "cpu" (decided when models load)
    dtype: str | None = None  # None: float32; "float16"/"bfloat16" cast the weights
    local_files_only: bool = False  # True: never try the network, only the cache or folders
    preset: str | None = None  # speed preset (PRESETS): "accurate" or "fast", resolved per backend
    clip: Any = None  # CLIP for text_tokens / verify="clip": name, folder, "open_clip:..." or an encoder
    adapter: Any = None  # text-prompt adapter folder (grounded train-adapter) or a loaded adapter

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model is not None and (self.detector is not None or self.segmenter is not None):
            raise InputError(f"model={self.model!r} (a concept segmenter) replaces the detector and the segmenter; "
                             f"give either model (--model) or detector/segmenter (--detector/--segmenter), not both")
        if self.preset is not None and self.preset not in PRESET_NAMES:
            raise InputError(f"preset must be one of {list(PRESET_NAMES)} or None, got {self.preset!r}")

    @property
    def acceleration(self) -> Acceleration:
        """The Acceleration fields of this config (the preset not yet applied)."""
        return Acceleration(**{name: getattr(self, name) for name in option_names(Acceleration)})

    def resolved(self) -> ModelConfig:
        """This config with the default detector and segmenter filled in when no concept segmenter is given."""
        if self.model is not None:
            return self
        return replace(self, detector=self.detector or DEFAULT_DETECTOR, segmenter=self.segmenter or DEFAULT_SEGMENTER)


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


TILE_AUTO = "auto"  # TileOptions.tile: slices of the backend's own input size, only when the image is larger
MIN_TILE = 32  # pixels: the smallest slice side accepted


@dataclass(frozen=True)
class TileOptions:
    """Tiled inference for large images (grounded/pipeline/tiling.py); off unless ``tile`` is set."""

    tile: int | str | None = None  # None: off; "auto": as the backend sees it, when the image is larger; N: N x N px
    tile_overlap: float = 0.2  # fraction of a slice shared with its neighbour (SAHI's overlap ratio), in [0, 1)
    tile_whole: bool = True  # also the whole image (SAHI's "standard prediction"), merged with the slices
    tile_batch: int | None = None  # slices per detector call (None: 4 on a GPU, 1 on the CPU, where batching
    # buys no speed and costs memory); bounds memory, not results

    def __post_init__(self) -> None:
        tile = self.tile
        if isinstance(tile, str) and tile.strip().isdigit():
            object.__setattr__(self, "tile", tile := int(tile))
        if tile is not None and tile != TILE_AUTO and (isinstance(tile, bool) or not isinstance(tile, int)
                                                        or tile < MIN_TILE):
            raise InputError(f"tile must be 'auto', a slice side of at least {MIN_TILE} pixels, or None (off), "
                             f"got {tile!r}")
        overlap = self.tile_overlap
        if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0.0 <= overlap < 1.0:
            raise InputError(f"tile_overlap must be a fraction in [0, 1), e.g. 0.2, got {overlap!r}")
        if not isinstance(self.tile_whole, bool):
            raise InputError(f"tile_whole must be True or False, got {self.tile_whole!r}")
        batch = self.tile_batch
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
            raise InputError(f"tile_batch must be a positive integer or None (4 on a GPU, 1 on the CPU), got {batch!r}")

    @property
    def enabled(self) -> bool:
        return self.tile is not None


TILE_HELP = {  # TileOptions field -> its flag's help (one text for the CLI's flags and serve's form fields)
    "tile": {"metavar": "auto|SIZE", "help": "run the detector over overlapping slices of large images: auto (as "
                                             "large as the detector sees, only for larger images) or SIZE pixels; "
                                             "masks at full resolution (default: off)"},
    "tile_overlap": {"help": "fraction of a slice shared with its neighbours (default %(default)s)"},
    "tile_whole": {"flag": "--no-tile-whole", "help": "slices only: leave out the whole-image pass (SAHI's "
                                                      "standard prediction) that finds objects larger than a slice"},
    "tile_batch": {"type": int, "help": "slices per detector call: bounds memory, not results (default 4 on a GPU, "
                                        "1 on the CPU, where batching buys no speed)"},
}


def as_kwargs(config: Any) -> dict[str, Any]:
    """A config dataclass's fields as keyword arguments (shallow: a loaded encoder is passed on, not copied)."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


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
