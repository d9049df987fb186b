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
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--detector, --segmenter, --device, --dtype, --offline, and the detection options."""
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


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "box_threshold": args.box_threshold,
        "text_threshold": args.text_threshold,
        "nms": args.nms,
        "nms_on": args.nms_on,
        "nms_iou": args.nms_iou,
        "multimask": args.multimask,
        "max_detections": args.max_detections,
    }


def predictor_from_args(args: argparse.Namespace):
    """Build the teacher :class:`grounded.Predictor` from parsed arguments."""
    from grounded.pipeline.predictor import Predictor

    speed = {name: getattr(args, name, None) for name in ("preset", "autocast", "quantize", "detector_size", "threads")}
    return Predictor(args.detector, args.segmenter, device=args.device, dtype=args.dtype,
                     local_files_only=args.offline, **speed, **options_from_args(args))
