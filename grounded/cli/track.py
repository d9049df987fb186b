"""``grounded track VIDEO PROMPT --out OUT``: what the prompt names, tracked through videos, exported."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grounded.cli.common import DETECTION, TILE, Flags, add_tile_arguments
from grounded.errors import InputError

EXAMPLES = """examples:
  grounded track clip.mp4 "car, person" --out tracked/
  grounded track clip.mp4 "child . bed ." --out tracked/ --detector IDEA-Research/grounding-dino-tiny \\
      --segmenter facebook/sam2.1-hiera-tiny --detect-every 15
  grounded track clip.mp4 "car, person" --out tracked/ --model facebook/sam3     # SAM 3 video, one session
  grounded track frames/ "a dog" --out tracked/          # a folder of numbered frames (00000.jpg, ...)
  grounded track videos/ "car, person" --out tracked/ --engine ray --workers 4    # one video per actor
  grounded track drone.mp4 "a car" --out tracked/ --tile auto     # large frames, small objects: detector on slices

writes OUT/<video>/: mot.txt (MOTChallenge boxes), mots.txt (MOTS RLE masks), idmaps/NNNNNN.png (16-bit track
ids), ytvis.json (YouTube-VIS, RLE per frame), tracked.mp4 (annotated), status.json; OUT/summary.json.
Run the same command again to resume (finished videos are skipped, a video continues from its last finished
chunk). A video that fails is reported on one line (grounded: error: VIDEO: TYPE: reason) and the others go
on; the exit status is 1 if any failed, 2 for an error before any video (bad prompt, option or model)."""

DETECTION_FIELDS = ("box_threshold", "text_threshold", "nms", "nms_iou", "max_detections")  # the ones tracking uses


def _flags() -> tuple[Flags, Flags]:
    """(the TrackOptions flags, the SegmentOptions flags tracking uses), from the dataclasses (grounded/cli/common.py)."""
    from grounded.config import SegmentOptions
    from grounded.video.options import TrackOptions

    tracking = {name: {"help": text} for name, text in TrackOptions.field_help().items()}
    detection = {name: DETECTION[name] for name in DETECTION_FIELDS}
    return (Flags("track_fields", (TrackOptions,), (("tracking", tracking),)),
            Flags("detection_fields", (SegmentOptions,), (("detection options (detector + segmenter)", detection),)))


def register(sub: argparse._SubParsersAction) -> None:
    from grounded.video.export import FORMATS

    p = sub.add_parser("track", help="track what a text prompt names through videos (MOT, MOTS, YouTube-VIS, MP4)",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path, help="a video file, a folder of numbered frames, or a folder of videos")
    p.add_argument("prompt", nargs="?", help='class names ("car, person"), a caption ("car . person .") or a phrase; '
                                             "omit it when --ontology is given")
    p.add_argument("--ontology", type=Path, help="YAML ontology (classes with synonyms) instead of a prompt")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, from %(default)s")
    p.add_argument("--allow-vfr", action="store_true", help="number the frames of a variable frame rate video in "
                                                            "order instead of refusing it")
    p.add_argument("--force", action="store_true", help="OUT holds a run with other settings: discard it")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    models = p.add_argument_group("models (Hugging Face names or local folders; the backend follows model_type)")
    models.add_argument("--detector", help="open-vocabulary detector (default IDEA-Research/grounding-dino-tiny)")
    models.add_argument("--segmenter", help="video segmenter: SAM 2 / 2.1 or EdgeTAM video (default "
                                            "facebook/sam2.1-hiera-tiny)")
    models.add_argument("--model", help="concept video model instead of detector + segmenter: SAM 3 video")
    models.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    models.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="weights dtype (default float32)")
    models.add_argument("--offline", dest="local_files_only", action="store_true",
                        help="never contact the Hugging Face hub; use the cache or folders")
    tracking, detection = _flags()
    tracking.add(p)
    detection.add(p)
    add_tile_arguments(p)  # the detector on slices of key frames (detector + segmenter only)
    engine = p.add_argument_group("engine")
    engine.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: videos one after another; ray: one video per actor on a Ray cluster")
    engine.add_argument("--workers", type=int, default=1, help="Ray actors (default 1)")
    engine.add_argument("--ray-address", help="a running Ray cluster (default: start a local one)")
    engine.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.ontology import Ontology
    from grounded.video.run import track

    if args.ontology is not None:
        if args.prompt is not None:
            raise InputError("give a prompt or --ontology, not both")
        prompt = Ontology.from_yaml(args.ontology)
    elif args.prompt is None:
        raise InputError('give a prompt after the video, e.g. grounded track clip.mp4 "car, person" --out OUT')
    else:
        prompt = args.prompt
    tracking, detection = _flags()
    options = {**tracking.read(args), **detection.read(args), **TILE.read(args)}  # a concept model refuses
    # detection options changed from their defaults (it has its own thresholds) and --tile, never ignores them
    models = {k: getattr(args, k) for k in ("detector", "segmenter", "model", "device", "dtype") if getattr(args, k)}
    summary = track(args.video, prompt, out=args.out, formats=[f.strip() for f in args.formats.split(",") if f.strip()],
                    force=args.force, allow_vfr=args.allow_vfr, progress=args.progress, engine=args.engine,
                    workers=args.workers, ray_address=args.ray_address, gpus_per_worker=args.gpus_per_worker,
                    local_files_only=args.local_files_only, **models, **options)
    for row in summary["videos"]:
        if row.get("done"):
            print(f"{args.out / row['video']}: {row['frames']} frames, {row['tracks']} tracks")
        else:
            error = row["error"]
            print(f"grounded: error: {row['video']}: {error['type']}: {error['reason']}", file=sys.stderr)
    return 1 if summary["failed"] else 0
