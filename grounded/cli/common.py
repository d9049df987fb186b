"""The teacher's command-line flags, generated from the config dataclasses (the one place settings live).

Every command that builds a :class:`grounded.Predictor` (segment, label, distill, train-adapter) calls
:func:`add_model_arguments`; each flag's ``dest`` is a field of :class:`grounded.config.ModelConfig` or
:class:`grounded.config.SegmentOptions`, its default is the field's, and :func:`teacher_kwargs` reads those
fields back, so a flag cannot be parsed and then dropped. The tables below hold only what a dataclass cannot
say: the flag's name when it differs, its help, its choices. A field missing from them is a test failure
(tests/test_settings.py) unless it is listed in ``NOT_ON_THE_COMMAND_LINE``.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from grounded.config import (
    AUTOCAST_CHOICES,
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    NMS_MODES,
    NMS_ON,
    PRESET_NAMES,
    QUANTIZE_CHOICES,
    ModelConfig,
    SegmentOptions,
    TileOptions,
)

MODELS = {  # field -> argparse keywords (+ "flag" when it is not --field-name)
    "detector": {"help": f"open-vocabulary detector: Hugging Face name or folder (default {DEFAULT_DETECTOR}; also "
                         "grounding-dino-base, MM-Grounding-DINO, OWLv2, OmDet-Turbo)"},
    "segmenter": {"help": f"promptable segmenter: name or folder (default {DEFAULT_SEGMENTER}; also SAM-HQ, "
                          "SAM 2 / 2.1, EdgeTAM, SlimSAM)"},
    "model": {"help": "concept segmenter instead of detector + segmenter, e.g. facebook/sam3 (image + text -> masks)"},
    "device": {"help": "cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)"},
    "dtype": {"choices": ["float32", "float16", "bfloat16"], "help": "weights dtype (default float32)"},
    "local_files_only": {"flag": "--offline", "help": "never contact the Hugging Face hub; use the cache or folders"},
}
SPEED = {
    "preset": {"choices": PRESET_NAMES, "help": "fast: detector input 512 short side + autocast auto; accurate: "
                                                "float32 at 800"},
    "autocast": {"choices": AUTOCAST_CHOICES, "help": "compute in bf16/fp16 under torch.autocast; auto: only where "
                                                      "the CPU/GPU has it natively"},
    "quantize": {"choices": QUANTIZE_CHOICES, "help": "int8: dynamic int8 quantisation of all linear layers (CPU, "
                                                      "float32 weights)"},
    "detector_size": {"type": int, "help": "detector input short side (Grounding DINO; default 800)"},
    "threads": {"type": int, "help": "torch CPU threads (default: torch's choice)"},
    "retain_memory": {"flag": "--no-retain-memory", "help": "leave the C allocator alone (default on CPU: keep freed "
                      "memory in-process, no page faults; results are identical either way)"},
    "cpu_kernels": {"flag": "--no-cpu-kernels", "help": "keep transformers' grid_sample deformable attention "
                    "(default on CPU: the same maths as one weighted gather, ~4x faster per call)"},
}
DETECTION = {
    "box_threshold": {"help": "keep boxes whose score exceeds this (default %(default)s)"},
    "text_threshold": {"help": "Grounding DINO: ... and whose matched phrase's probability exceeds this "
                               "(default %(default)s)"},
    "nms": {"choices": NMS_MODES, "help": "non-max suppression per class, across classes, or none (default %(default)s)"},
    "nms_on": {"choices": NMS_ON, "help": "suppress on box IoU before the segmenter or mask IoU after it "
                                          "(default %(default)s)"},
    "nms_iou": {"help": "NMS IoU threshold (default %(default)s)"},
    "multimask": {"help": "the segmenter predicts 3 masks per box; keep the best by predicted IoU"},
    "max_detections": {"help": "at most this many detections per image (default %(default)s)"},
    "mask_threshold": {"help": "segmenter logit threshold for a mask pixel (default %(default)s)"},
    "sam_box_batch": {"help": "boxes per mask-decoder call: bounds memory, not results (default %(default)s)"},
}
CLIP = {
    "adapter": {"help": "text-prompt adapter folder from `grounded train-adapter`"},
    "clip": {"help": "CLIP name, folder or open_clip:ARCH[@PRETRAINED] (default: the adapter's CLIP, else "
                     "openai/clip-vit-base-patch32)"},
    "text_tokens": {"flag": "--text-tokens", "const": True,
                    "help": "the segmenter gets each box + the adapter's tokens for its phrase"},
    "verify": {"choices": ["clip"], "help": "clip: CLIP checks each label on its masked crop; keeps, corrects or drops it"},
}
TILING = {  # the fields of TileOptions (grounded/pipeline/tiled.py); segment and label take them
    "tile": {"metavar": "auto|SIZE", "help": "run the detector over overlapping slices of large images: auto (as "
                                             "large as the detector sees, only for larger images) or SIZE pixels; "
                                             "masks at full resolution (default: off)"},
    "tile_overlap": {"help": "fraction of a slice shared with its neighbours (default %(default)s)"},
    "tile_whole": {"flag": "--no-tile-whole", "help": "slices only: leave out the whole-image pass (SAHI's "
                                                      "standard prediction) that finds objects larger than a slice"},
    "tile_batch": {"type": int, "help": "slices per detector call: bounds memory, not results (default 4 on a GPU, "
                                        "1 on the CPU, where batching buys no speed)"},
}
NOT_ON_THE_COMMAND_LINE = {  # field -> why
    "class_box_thresholds": "per class: set box_threshold on the class in the ontology YAML",
    "class_text_thresholds": "per class: set text_threshold on the class in the ontology YAML",
}
GROUPS = (  # (title, table)
    ("models (Hugging Face names or local folders; the backend follows the checkpoint's model_type)", MODELS),
    ("speed (all off by default: float32 at the checkpoint's input size)", SPEED),
    ("detection options", DETECTION),
)
CLIP_GROUP = ("CLIP in the loop (off by default)", CLIP)


def _add_field(group: Any, name: str, default: Any, spec: dict[str, Any]) -> None:
    spec = dict(spec)
    flag = spec.pop("flag", "--" + name.replace("_", "-"))
    if "const" in spec:  # a flag that stores a fixed value
        group.add_argument(flag, dest=name, action="store_const", default=default, **spec)
    elif flag.startswith("--no-"):  # an on-by-default switch (None: decided when the models load)
        group.add_argument(flag, dest=name, action="store_false", default=default, **spec)
    elif isinstance(default, bool):
        group.add_argument(flag, dest=name, action="store_true", default=default, **spec)
    else:
        if "type" not in spec and "choices" not in spec and default is not None:
            spec["type"] = type(default)
        group.add_argument(flag, dest=name, default=default, **spec)


def _defaults(*classes: type) -> dict[str, Any]:
    return {f.name: f.default for cls in classes for f in fields(cls) if f.default is not MISSING}


def add_model_arguments(parser: argparse.ArgumentParser, clip_options: bool = True) -> None:
    """The teacher's flags: models, speed, detection options, and (``clip_options``) the CLIP ones."""
    defaults = _defaults(ModelConfig, SegmentOptions)
    added: list[str] = []
    for title, table in GROUPS + ((CLIP_GROUP,) if clip_options else ()):
        group = parser.add_argument_group(title)
        for name, spec in table.items():
            if name == "text_tokens":  # two flags for one field: --text-tokens (True) or --text-only ("only")
                tokens = group.add_mutually_exclusive_group()
                _add_field(tokens, name, defaults[name], spec)
                tokens.add_argument("--text-only", dest=name, action="store_const", const="only",
                                    help="no detector: one mask per class from the adapter's text tokens alone")
            else:
                _add_field(group, name, defaults[name], spec)
            added.append(name)
    parser.set_defaults(teacher_fields=tuple(added))


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tile auto|SIZE`` and the other :class:`grounded.config.TileOptions` fields (not the teacher's)."""
    group = parser.add_argument_group("large images (tiled inference; off by default)")
    defaults = _defaults(TileOptions)
    for name, spec in TILING.items():
        _add_field(group, name, defaults[name], spec)


def tile_options(args: argparse.Namespace) -> TileOptions:
    """The TileOptions the ``--tile*`` flags describe (checked: a bad value is an InputError)."""
    return TileOptions(**{name: getattr(args, name) for name in TILING})


def teacher_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """JSON-able keyword arguments such that ``Predictor(**teacher_kwargs(args))`` is the teacher the flags
    describe (every flag :func:`add_model_arguments` added, by field name; paths as strings)."""
    out = {}
    for name in args.teacher_fields:
        value = getattr(args, name)
        out[name] = str(value) if isinstance(value, Path) else value
    return out


def predictor_from_args(args: argparse.Namespace):
    """Build the teacher :class:`grounded.Predictor` from parsed arguments."""
    from grounded.pipeline.predictor import Predictor

    return Predictor(**teacher_kwargs(args))
