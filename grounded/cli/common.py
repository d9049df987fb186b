"""Command-line flags generated from the config dataclasses (the one place settings live).

A :class:`Flags` joins config dataclasses to tables that hold only what a dataclass cannot say: a flag's
name when it differs from ``--field-name``, its help, its choices. Each flag's ``dest`` is a field and its
default is the field's, and :meth:`Flags.read` returns those fields by name, so a flag cannot be parsed and
then dropped. A field missing from the tables is a test failure (tests/test_settings.py) unless ``omitted``
says why it has no flag. The same generator serves every command's settings:

- :data:`TEACHER` (here): :class:`grounded.config.ModelConfig` + :class:`grounded.config.SegmentOptions`, for
  every command that builds a :class:`grounded.Predictor` (:func:`add_model_arguments`, :func:`teacher_kwargs`);
- ``STUDENT`` / ``TRAINING`` (grounded/cli/train.py): ``StudentConfig`` / ``TrainConfig`` (train, distill);
- ``LABEL`` (grounded/cli/label.py): ``LabelConfig``, the run settings of ``grounded.label``;
- :data:`TILE` (here): :class:`grounded.config.TileOptions`, tiled inference for segment, label, serve and track.

A table row is argparse's keywords plus: ``flag`` (the flag, when not ``--field-name``; ``--no-...`` makes an
on-by-default switch), ``also`` ((flag, value, help): a second flag storing a fixed value in the same field,
exclusive with the first), ``default`` (the flag's own default, None: a flag left unset leaves the field out,
so the dataclass's or the command's default applies) and ``parse`` (applied to a given value when it is read,
so its errors stay the library's one-line ones).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from grounded.config import (
    AUTOCAST_CHOICES,
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    NMS_MODES,
    NMS_ON,
    PRESET_NAMES,
    PRESETS,
    QUANTIZE_CHOICES,
    RESIZABLE_INPUT,
    TILE_HELP,
    ModelConfig,
    SegmentOptions,
    TileOptions,
)

Table = dict[str, dict[str, Any]]  # field -> argparse keywords (+ "flag", "also", "default", "parse")

MODELS = {  # field -> argparse keywords (+ "flag" when it is not --field-name)
    "detector": {"help": f"open-vocabulary detector: Hugging Face name or folder (default {DEFAULT_DETECTOR}; also "
                         "grounding-dino-base, MM-Grounding-DINO, OWLv2, OmDet-Turbo)"},
    "segmenter": {"help": f"promptable segmenter: name or folder (default {DEFAULT_SEGMENTER}; also SAM-HQ, "
                          "SAM 2 / 2.1, EdgeTAM, SlimSAM)"},
    "model": {"help": "concept segmenter instead of detector + segmenter, e.g. facebook/sam3 (image + text -> masks)"},
    "device": {"help": "auto, cpu, cuda, cuda:1 ... (default: auto, cuda if available, else cpu)"},
    "dtype": {"choices": ["float32", "float16", "bfloat16"], "help": "weights dtype (default float32)"},
    "local_files_only": {"flag": "--offline", "help": "never contact the Hugging Face hub; use the cache or folders"},
}
SPEED_SCOPE = {  # which backends take a speed setting (grounded.models.acceleration.takes); default: every one
    "autocast": "on every backend (bf16 where the CPU/GPU has it natively, else float32)",
    "detector_size": f"on {' and '.join(RESIZABLE_INPUT)} only (the others keep their checkpoint's input size)",
}


def preset_help() -> str:
    """What each preset does, per backend, from PRESETS (grounded/config.py) and SPEED_SCOPE."""
    described = []
    for name, preset in PRESETS.items():
        settings = [f"{field.name}={getattr(preset, field.name)} {SPEED_SCOPE.get(field.name, 'on every backend')}"
                    for field in fields(preset) if getattr(preset, field.name) is not None]
        described.append(f"{name}: " + (" + ".join(settings) or "float32 at each checkpoint's input size"))
    return ("; ".join(described) + ". Explicit speed flags override the preset's. fast changes results (smaller "
            "detector input; bf16 where native): agreement with float32 in the README's Speed section")


SPEED = {
    "preset": {"choices": PRESET_NAMES, "help": preset_help()},
    "autocast": {"choices": AUTOCAST_CHOICES, "help": "compute in bf16/fp16 under torch.autocast; auto: only where "
                                                      "the CPU/GPU has it natively (never emulated, so never slower "
                                                      "than float32); changes results slightly"},
    "quantize": {"choices": QUANTIZE_CHOICES, "help": "int8: dynamic int8 quantisation of all linear layers (CPU, "
                                                      "float32 weights; 1.1-1.5x, changes results: README Speed)"},
    "detector_size": {"type": int, "help": f"detector input short side ({', '.join(RESIZABLE_INPUT)}; default "
                                           "800); refused by other backends"},
    "threads": {"type": int, "help": "torch CPU threads (default: torch's choice)"},
    "retain_memory": {"flag": "--no-retain-memory", "help": "leave the C allocator alone (default on CPU: keep freed "
                      "memory in-process, no page faults; results are identical either way)"},
    "cpu_kernels": {"flag": "--no-cpu-kernels", "help": "keep transformers' grid_sample deformable attention "
                    "(default on CPU: the same maths as one weighted gather, ~4x faster per call)"},
    "compile": {"const": True, "help": "torch.compile the segmenter's mask decoder (the per-box and per-click "
                "step: 1.2-1.4x per click on a 2-core CPU, equal up to float rounding); its first calls compile (20-40 s each)"},
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
                    "help": "the segmenter gets each box + the adapter's tokens for its phrase",
                    "also": ("--text-only", "only", "no detector: one mask per class from the adapter's text tokens "
                                                    "alone")},
    "verify": {"choices": ["clip"], "help": "clip: CLIP checks each label on its masked crop; keeps, corrects or drops it"},
}
NOT_ON_THE_COMMAND_LINE = {  # field -> why
    "class_box_thresholds": "per class: set box_threshold on the class in the ontology YAML",
    "class_text_thresholds": "per class: set text_threshold on the class in the ontology YAML",
}
GROUPS = (  # (title, table)
    ("models (Hugging Face names or local folders; the backend follows the checkpoint's model_type)", MODELS),
    ("speed (all off by default: float32 at the checkpoint's input size)", SPEED),
    ("detection options", DETECTION),
    ("CLIP in the loop (off by default)", CLIP),
)


@dataclass(frozen=True)
class Flags:
    """The flags of one set of config dataclasses (see the module docstring)."""

    key: str  # the parsed namespace lists, under this name, the fields whose flags were added
    classes: tuple[type, ...]  # the dataclasses whose fields the flags set (their defaults are the flags')
    groups: tuple[tuple[str, Table], ...]  # (argument group title, table)
    omitted: dict[str, str] = field(default_factory=dict)  # field -> why it has no flag

    def specs(self) -> Table:
        return {name: spec for _, table in self.groups for name, spec in table.items()}

    def add(self, parser: argparse.ArgumentParser, skip: Iterable[str] = (),
            shared: Iterable[str] = ()) -> dict[str, Any]:
        """Add a flag for every field in the tables but ``skip`` (not on this command) and ``shared`` (set by
        another flag of the command with the same name, e.g. distill's one --device for teacher and student:
        read from it when given). Returns the argument groups by title, for a command's own flags."""
        defaults = {f.name: f.default for cls in self.classes for f in fields(cls) if f.default is not MISSING}
        leave, added, groups = set(skip) | set(shared), [], {}
        for title, table in self.groups:
            names = [name for name in table if name not in leave]
            if names:
                groups[title] = parser.add_argument_group(title)
            for name in names:
                _add_field(groups[title], name, defaults.get(name), table[name])
                added.append(name)
        parser.set_defaults(**{self.key: tuple(added), self.key + "_shared": tuple(sorted(set(shared)))})
        return groups

    def read(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields the flags set, as keyword arguments for the dataclasses (paths as strings)."""
        specs, out = self.specs(), {}
        shared = getattr(args, self.key + "_shared")
        for name in (*getattr(args, self.key), *shared):
            value, spec = getattr(args, name), specs[name]
            if value is None and ("default" in spec or name in shared):
                continue  # not given: the field's own default (or the command's) applies
            if value is not None and "parse" in spec:
                value = spec["parse"](value)
            out[name] = str(value) if isinstance(value, Path) else value
        return out


def _add_field(group: Any, name: str, default: Any, spec: dict[str, Any]) -> None:
    spec = dict(spec)
    flag = spec.pop("flag", "--" + name.replace("_", "-"))
    default = spec.pop("default", default)
    spec.pop("parse", None)
    also = spec.pop("also", None)
    if also is not None:  # two flags for one field, e.g. --text-tokens (True) or --text-only ("only")
        group = group.add_mutually_exclusive_group()
    if "const" in spec:  # a flag that stores a fixed value
        group.add_argument(flag, dest=name, action="store_const", default=default, **spec)
    elif flag.startswith("--no-"):  # an on-by-default switch (None: decided when the models load)
        group.add_argument(flag, dest=name, action="store_false", default=default, **spec)
    elif isinstance(default, bool):
        group.add_argument(flag, dest=name, action="store_true", default=default, **spec)
    else:
        if "type" not in spec and "choices" not in spec and default is not None:
            spec["type"] = type(default)
        if "choices" not in spec:  # named after the flag, not the field (--focal FOCAL)
            spec.setdefault("metavar", flag[2:].replace("-", "_").upper())
        group.add_argument(flag, dest=name, default=default, **spec)
    if also is not None:
        alias, value, help_ = also
        group.add_argument(alias, dest=name, action="store_const", const=value, default=default, help=help_)


TEACHER = Flags("teacher_fields", (ModelConfig, SegmentOptions), GROUPS, NOT_ON_THE_COMMAND_LINE)
TILE = Flags("tile_fields", (TileOptions,), (("large images (tiled inference; off by default)", TILE_HELP),))


def add_model_arguments(parser: argparse.ArgumentParser, clip_options: bool = True) -> None:
    """The teacher's flags: models, speed, detection options, and (``clip_options``) the CLIP ones."""
    TEACHER.add(parser, skip=() if clip_options else CLIP)


def add_tile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tile auto|SIZE`` and the other :class:`grounded.config.TileOptions` fields (not the teacher's)."""
    TILE.add(parser)


def tile_options(args: argparse.Namespace) -> TileOptions:
    """The TileOptions the ``--tile*`` flags describe (checked: a bad value is an InputError)."""
    return TileOptions(**TILE.read(args))


def teacher_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """JSON-able keyword arguments such that ``Predictor(**teacher_kwargs(args))`` is the teacher the flags
    describe (every flag :func:`add_model_arguments` added, by field name; paths as strings)."""
    return TEACHER.read(args)


def predictor_from_args(args: argparse.Namespace):
    """Build the teacher :class:`grounded.Predictor` from parsed arguments."""
    from grounded.pipeline.predictor import Predictor

    return Predictor(**teacher_kwargs(args))
