"""Arguments shared by the subcommands that run the teacher pipeline (segment, label, ...)."""

from __future__ import annotations

import argparse
from typing import Any

from grounded.config import (
    AUTOCAST_CHOICES,
    DEFAULT_DETECTOR,
    DEFAULT_SEGMENTER,
    NMS_MODES,
    NMS_ON,
    PRESET_NAMES,
    QUANTIZE_CHOICES,
    SegmentOptions,
    option_names,
)


def add_model_arguments(parser: argparse.ArgumentParser, clip_options: bool = True) -> None:
    """--detector, --segmenter, --device, --dtype, --offline, and the detection options (and the CLIP ones)."""
    group = parser.add_argument_group("models (Hugging Face names or local folders)")
    group.add_argument("--detector", default=DEFAULT_DETECTOR,
                       help=f"Grounding DINO name or folder (default: {DEFAULT_DETECTOR}; also IDEA-Research/grounding-dino-base)")
    group.add_argument("--segmenter", default=DEFAULT_SEGMENTER,
                       help=f"SAM name or folder (default: {DEFAULT_SEGMENTER}; any SamModel checkpoint, e.g. SlimSAM)")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    group.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="weights dtype (default float32)")
    group.add_argument("--offline", action="store_true", help="never contact the Hugging Face hub; use the cache or folders")
    speed = parser.add_argument_group("speed (all off by default: float32 at the checkpoint's input size)")
    speed.add_argument("--preset", choices=PRESET_NAMES, default=None,
                       help="fast: detector input 512 short side + autocast auto; accurate: float32 at 800")
    speed.add_argument("--autocast", choices=AUTOCAST_CHOICES, default=None,
                       help="compute in bf16/fp16 under torch.autocast; auto: only where the CPU/GPU has it natively")
    speed.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                       help="int8: dynamic int8 quantisation of all linear layers (CPU, float32 weights)")
    speed.add_argument("--detector-size", type=int, default=None, help="Grounding DINO input short side (default 800)")
    speed.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    speed.add_argument("--no-retain-memory", dest="retain_memory", action="store_false", default=None,
                       help="leave the C allocator alone (default on CPU: keep freed memory in-process, no page "
                            "faults; results are identical either way)")
    speed.add_argument("--no-cpu-kernels", dest="cpu_kernels", action="store_false", default=None,
                       help="keep transformers' grid_sample deformable attention (default on CPU: the same maths "
                            "as one weighted gather, ~4x faster per call)")
    defaults = SegmentOptions()
    opts = parser.add_argument_group("detection options")
    opts.add_argument("--box-threshold", type=float, default=defaults.box_threshold,
                      help="keep boxes whose best token probability exceeds this (default %(default)s)")
    opts.add_argument("--text-threshold", type=float, default=defaults.text_threshold,
                      help="... and whose matched phrase's probability exceeds this (default %(default)s)")
    opts.add_argument("--nms", choices=NMS_MODES, default=defaults.nms,
                      help="non-max suppression per class, across classes, or none (default %(default)s)")
    opts.add_argument("--nms-on", choices=NMS_ON, default=defaults.nms_on,
                      help="suppress on box IoU before SAM or mask IoU after SAM (default %(default)s)")
    opts.add_argument("--nms-iou", type=float, default=defaults.nms_iou, help="NMS IoU threshold (default %(default)s)")
    opts.add_argument("--multimask", action="store_true", help="SAM predicts 3 masks per box; keep the best by predicted IoU")
    opts.add_argument("--max-detections", type=int, default=defaults.max_detections,
                      help="at most this many detections per image (default %(default)s)")
    if clip_options:
        add_clip_arguments(parser)


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """--adapter, --clip, --text-tokens, --text-only, --verify (grounded/clip; all off by default)."""
    group = parser.add_argument_group("CLIP in the loop (off by default)")
    group.add_argument("--adapter", default=None, help="text-prompt adapter folder from `grounded train-adapter`")
    group.add_argument("--clip", default=None, help="CLIP name, folder or open_clip:ARCH[@PRETRAINED] (default: the "
                                                      "adapter's CLIP, else openai/clip-vit-base-patch32)")
    group.add_argument("--text-tokens", action="store_true", help="SAM gets each box + the adapter's tokens for its phrase")
    group.add_argument("--text-only", action="store_true", help="no detector: one mask per class from text tokens alone")
    group.add_argument("--verify", choices=["clip"], default=None,
                       help="clip: CLIP checks each label on its masked crop; keeps, corrects or drops it")


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "nms": args.nms,
        "nms_on": args.nms_on,
        "nms_iou": args.nms_iou,
        "multimask": args.multimask,
        "max_detections": args.max_detections,
        **clip_options_from_args(args),
    }


def clip_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """text_tokens / verify, only when asked for (so other commands' options stay as they were)."""
    text_tokens = "only" if getattr(args, "text_only", False) else bool(getattr(args, "text_tokens", False))
    options = {"text_tokens": text_tokens, "verify": getattr(args, "verify", None)}
    return {k: v for k, v in options.items() if v}


def teacher_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """JSON-able keyword arguments such that ``Predictor(**teacher_kwargs(args))`` builds the teacher the flags
    describe (sent to Ray workers, which build their own)."""
    from grounded.models.acceleration import Acceleration

    speed = {name: getattr(args, name, None) for name in ("preset", *option_names(Acceleration))}
    return {"detector": args.detector, "segmenter": args.segmenter, "device": args.device, "dtype": args.dtype,
            "local_files_only": args.offline, "clip": getattr(args, "clip", None),
            "adapter": getattr(args, "adapter", None), **speed, **options_from_args(args)}


def predictor_from_args(args: argparse.Namespace):
    """Build the teacher :class:`grounded.Predictor` from parsed arguments."""
    from grounded.pipeline.predictor import Predictor

    return Predictor(**teacher_kwargs(args))
