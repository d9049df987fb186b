"""Track what a prompt names through a video: frame by frame in Python, then every output format on disk.

    python examples/track_video.py clip.mp4 "child . bed ." --out tracked/
    python examples/track_video.py frames/ "a dog" --segmenter facebook/sam2.1-hiera-tiny --detect-every 10
    python examples/track_video.py ../shared/data/video/bedroom.mp4 "child . bed ." --tiny   # tiny RANDOM models

The models are loaded once (a ``VideoPredictor``) and used twice: first as an iterator over the first frames
(``grounded.track(video, prompt, predictor=...)`` yields ``(frame_index, sv.Detections)`` with ``tracker_id``),
then for the whole video into ``--out`` (MOT, MOTS, YouTube-VIS JSON, PNG id maps, an annotated MP4; resumable:
run it again after an interruption and it continues).

With ``--tiny`` the script builds a tiny random detector and SAM 2 video model, so it runs on a machine without
weights; the tracks are meaningless (random weights) and only show that the plumbing works.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import grounded
from grounded.video.predictor import VideoPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", type=Path, help="a video file, or a folder of numbered frames")
    parser.add_argument("prompt", help='what to track, e.g. "child . bed ." or "car, person"')
    parser.add_argument("--out", type=Path, default=Path("tracked_out"))
    parser.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny")
    parser.add_argument("--segmenter", default="facebook/sam2.1-hiera-tiny")
    parser.add_argument("--detect-every", type=int, default=15, help="frames between detections (new objects)")
    parser.add_argument("--preview-frames", type=int, default=10, help="frames printed from the iterator")
    parser.add_argument("--tiny", action="store_true", help="build tiny random models (plumbing demo only)")
    args = parser.parse_args()

    options = {}
    if args.tiny:
        from grounded.testing.tiny import build_tiny_models
        from grounded.testing.tiny_published import build_tiny_sam2_video

        root = Path(tempfile.mkdtemp(prefix="grounded_tiny_"))
        args.detector = str(build_tiny_models(root)[0])
        args.segmenter = str(build_tiny_sam2_video(root / "sam2_video", tracking=True))
        options = {"box_threshold": 0.2, "text_threshold": 0.0, "max_detections": 5}  # random weights score low
    predictor = VideoPredictor(detector=args.detector, segmenter=args.segmenter, detect_every=args.detect_every,
                               **options)

    frames = grounded.track(args.video, args.prompt, predictor=predictor)  # an iterator: nothing is written
    for index, detections in itertools.islice(frames, args.preview_frames):
        tracks = [f"#{t} {name}" for t, name in zip(detections.tracker_id, detections.data["class_name"], strict=True)]
        print(f"frame {index}: {', '.join(tracks) or 'nothing tracked'}")

    summary = grounded.track(args.video, args.prompt, predictor=predictor, out=args.out, progress=True)
    for row in summary["videos"]:  # a video that failed has its reason here (and the run goes on to the next)
        state = f"{row['frames']} frames, {row['tracks']} tracks, {', '.join(row['exports'])}" if row.get("done") \
            else row.get("error", {}).get("reason", "not done")
        print(f"{row['video']}: {state} -> {args.out / row['video']}")
    if args.tiny:
        print("(tiny random models: the tracks above are noise, not results)")


if __name__ == "__main__":
    main()
