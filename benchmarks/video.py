"""Benchmark: tracking through video: frames/s, peak RSS as the video grows, and the ways others do it.

    python benchmarks/video.py --checkpoints 100 400 1600       # full size: Grounding DINO tiny + SAM 2.1 tiny
    python benchmarks/video.py --checkpoints 10 20 40            # a short run
    python benchmarks/video.py --sam3 --sam3-frames 3            # + SAM 3 video rows (full size: very slow on CPU)
    python benchmarks/video.py --sam3 --rows                     # only the SAM 3 video rows
    python benchmarks/video.py --tiny --sam3                     # tiny models: checks the harness only

Frames: ``../shared/data/video/bedroom.mp4`` (960x540, 200 frames), looped to the longest checkpoint, streamed.
Prompt "child . bed ."; the detector keeps at most 5 boxes a frame; at most ``--max-objects`` (8) live tracks. The number of objects
tracked per frame is printed: it follows the random detections and differs between rows, so frames/s compare
only at equal objects/frame. Each row runs in its
own process (its own peak RSS); RSS is read when the run reaches each checkpoint (frames done so far).

Rows (detector + video segmenter):

- **ours**: :class:`grounded.video.predictor.VideoPredictor`: detect every ``--detect-every`` frames, new
  objects admitted into the running session, the session pruned to the memory window, chunks of 300 frames.
- **plain**: transformers' own streaming loop on the same weights (the detector's boxes on frame 0, then
  ``model(inference_session, frame=...)`` per frame), the session unpruned (its documented use): memory grows
  with every frame.
- **gsam2**: Grounded-SAM-2's way: every 20 frames the detector runs and the session is reset and re-prompted
  with the new boxes (ids carried by mask IoU are not counted: only the model work).

SAM 3 video rows (``--sam3``, short: ``--sam3-frames``): **ours** one session with 5 phrases against **5
sessions** of one phrase each, the way SAM 3's own predictor needs (a new prompt resets its session); the ratio
(target >= 3x).

Weights are random (default configs: ``GroundingDinoConfig()``, ``Sam2VideoConfig()`` = the SAM 2.1 hiera-tiny
architecture at 1024 px, ``Sam3VideoConfig()``); random weights cost what real ones do, but the number of
objects tracked depends on the (meaningless) detections, so rows compare within one run only. One change to
the random SAM 2.1: its object-score head's output bias is set to +10, so every prompted object is "present"
(random weights otherwise score every object absent: all masks empty, no track admitted, and the memory bank
under test stays empty). The machine's
load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402

VIDEO = C.SHARED / "video" / "bedroom.mp4"
PROMPT = "child . bed ."
PHRASES = ["child", "bed", "toy", "window", "lamp"]


def always_present(folder: Path) -> None:
    """Set a saved random SAM 2 video model's object-score bias to +10: random weights call every object absent
    (masks all -1024), so none would be tracked and the memory bank under test would stay empty."""
    import torch
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(folder)


def build_models(cache: Path, tiny: bool, sam3: bool) -> dict[str, str]:
    """Folders of the models (built once, then loaded by path like a user's checkpoint)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    if tiny:
        from grounded.testing.tiny import build_tiny_models
        from grounded.testing.tiny_published import build_tiny_sam2_video, build_tiny_sam3_video

        if not (cache / "tiny_sam2_video_present" / "config.json").exists():
            build_tiny_models(cache / "tiny", vocab_file=C.BERT_VOCAB if C.BERT_VOCAB.exists() else None)
            build_tiny_sam2_video(cache / "tiny_sam2_video_present", tracking=True)
            always_present(cache / "tiny_sam2_video_present")
        out = {"detector": str(cache / "tiny" / "detector"), "segmenter": str(cache / "tiny_sam2_video_present")}
        if sam3:
            if not (cache / "tiny_sam3_video" / "config.json").exists():
                build_tiny_sam3_video(cache / "tiny_sam3_video", C.SHARED / "vocab" / "clip", tracking=True)
            out["model"] = str(cache / "tiny_sam3_video")
        return out
    out["detector"] = str(C.build_detector(cache / "gdino-tiny"))
    folder = cache / "sam2.1-hiera-tiny-video-present"
    if not (folder / "config.json").exists():
        import torch
        from transformers import (
            Sam2ImageProcessor,
            Sam2VideoConfig,
            Sam2VideoModel,
            Sam2VideoProcessor,
            Sam2VideoVideoProcessor,
        )

        torch.manual_seed(0)
        processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor())
        processor.save_pretrained(folder)
        Sam2VideoModel(Sam2VideoConfig()).eval().save_pretrained(folder)
        always_present(folder)
    out["segmenter"] = str(folder)
    if sam3:
        folder = cache / "sam3-video-1008"
        if not (folder / "config.json").exists():
            import torch
            from transformers import (
                CLIPTokenizer,
                Sam2VideoVideoProcessor,
                Sam3ImageProcessor,
                Sam3VideoConfig,
                Sam3VideoModel,
                Sam3VideoProcessor,
            )

            torch.manual_seed(0)
            tokenizer = CLIPTokenizer.from_pretrained(str(C.SHARED / "vocab" / "clip"))
            square, half = {"height": 1008, "width": 1008}, [0.5] * 3  # as facebook/sam3's video processor
            video = Sam2VideoVideoProcessor(size=square, image_mean=half, image_std=half)
            Sam3VideoProcessor(image_processor=Sam3ImageProcessor(), video_processor=video,
                               tokenizer=tokenizer).save_pretrained(folder)
            Sam3VideoModel(Sam3VideoConfig()).eval().save_pretrained(folder)
        out["model"] = str(folder)
    return out


def looped(count: int):
    """bedroom.mp4's frames, streamed and looped to ``count`` frames (a VideoSource)."""
    from grounded.video.frames import VideoInfo, VideoSource, open_video

    class Looped(VideoSource):
        def __init__(self) -> None:
            self.file = open_video(VIDEO)
            info = self.file.info
            self.info = VideoInfo("bedroom.mp4 looped", "file", info.width, info.height, count, info.fps)

        def frames(self, start: int = 0):
            index = 0
            while True:
                for _, frame in self.file.frames():
                    if index >= count:
                        return
                    if index >= start:
                        yield index, frame
                    index += 1

    return Looped()


def _detector(models):
    import torch

    from grounded.models.registry import load_backend

    return load_backend(models["detector"], "detector", torch.device("cpu"), torch.float32, True)


def _segmenter(models):
    import torch

    from grounded.video.backends import load_video_backend

    return load_video_backend(models["segmenter"], "segmenter", torch.device("cpu"), torch.float32, True)


def _boxes(detector, frame):
    from grounded.config import SegmentOptions
    from grounded.ontology import Ontology
    from grounded.pipeline.selection import select_boxes

    options = SegmentOptions(box_threshold=0.05, text_threshold=0.0, max_detections=5)
    found = detector.detect(detector.encode([frame]), Ontology.from_prompt(PROMPT), options)[0]
    return np.asarray(select_boxes(found, options).xyxy, dtype=np.float32)


def row(name: str, models: dict[str, str], checkpoints: list[int], detect_every: int, max_objects: int) -> dict:
    """One row, in this process: seconds and RSS at each checkpoint (each also written to stderr when reached)."""
    import torch

    marks, started, objects = [], time.perf_counter(), []
    count = max(checkpoints)

    def mark(done: int) -> None:
        if done in checkpoints:
            marks.append({"frames": done, "seconds": round(time.perf_counter() - started, 2),
                          "objects": round(float(np.mean(objects)), 2),
                          "rss_gib": round(C.current_rss_gib(), 3), "peak_rss_gib": round(C.peak_rss_gib(), 3)})
            print(json.dumps({"row": name, **marks[-1]}), file=sys.stderr, flush=True)

    if name == "ours":
        from grounded.video.predictor import VideoPredictor

        predictor = VideoPredictor(detector=_detector(models), segmenter=_segmenter(models),
                                   detect_every=detect_every, max_objects=max_objects, box_threshold=0.05,
                                   text_threshold=0.0, max_detections=5)
        started = time.perf_counter()
        for index, detections in predictor.track(looped(count), PROMPT):
            objects.append(len(detections))
            mark(index + 1)
    elif name in ("plain", "gsam2"):
        detector, segmenter = _detector(models), _segmenter(models)
        model, processor = segmenter.model, segmenter.processor
        session, started = None, time.perf_counter()
        with torch.inference_mode():
            for index, frame in looped(count).frames():
                pixels = processor(images=frame, return_tensors="pt")
                if index == 0 or (name == "gsam2" and index % 20 == 0):
                    boxes = _boxes(detector, frame)[:max_objects]
                    session = processor.init_video_session(inference_device="cpu", dtype=torch.float32)
                    if len(boxes):
                        processor.add_inputs_to_inference_session(session, frame_idx=index, obj_ids=list(range(len(boxes))),
                                                                  input_boxes=[boxes.tolist()],
                                                                  original_size=pixels["original_sizes"][0])
                if session.get_obj_num():
                    out = model(inference_session=session, frame=pixels["pixel_values"][0], frame_idx=index)
                    processor.post_process_masks([out.pred_masks], original_sizes=pixels["original_sizes"])
                objects.append(session.get_obj_num())
                mark(index + 1)
    return {"row": name, "marks": marks}


def sam3_row(name: str, models: dict[str, str], frames: int) -> dict:
    """SAM 3 video: 5 phrases in one session (ours) or one session per phrase; seconds for ``frames`` frames."""
    import torch

    from grounded.video.backends import load_video_backend

    tracker = load_video_backend(models["model"], "model", torch.device("cpu"), torch.float32, True)
    clip = [f for _, f in looped(frames).frames()]
    started = time.perf_counter()
    for phrases in ([PHRASES] if name == "sam3-ours" else [[p] for p in PHRASES]):
        session = tracker.start(clip[0].shape[:2], phrases)
        for index, frame in enumerate(clip):
            tracker.step(session, index, frame)
        tracker.finish(session)
    return {"row": name, "frames": frames, "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_gib": round(C.peak_rss_gib(), 3)}


def run_child(args, name: str) -> dict:
    command = [sys.executable, __file__, "--child", name, "--cache-dir", args.cache_dir, "--detect-every",
               str(args.detect_every), "--max-objects", str(args.max_objects), "--sam3-frames", str(args.sam3_frames), "--checkpoints",
               *map(str, args.checkpoints)] + (["--tiny"] if args.tiny else []) + (["--sam3"] if args.sam3 else [])
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, check=False)  # stderr: progress
    if done.returncode != 0:
        return {"row": name, "error": f"exit status {done.returncode} (its traceback is on stderr above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[100, 400, 1600], help="frames at which RSS is read")
    ap.add_argument("--detect-every", type=int, default=20)
    ap.add_argument("--max-objects", type=int, default=8, help="live tracks at most (plain/gsam2: boxes prompted)")
    ap.add_argument("--rows", nargs="*", default=["ours", "plain", "gsam2"], choices=["ours", "plain", "gsam2"],
                    help="detector + video segmenter rows (none: `--sam3 --rows` runs only the SAM 3 rows)")
    ap.add_argument("--sam3", action="store_true", help="add the SAM 3 video rows (slow on a CPU at full size)")
    ap.add_argument("--sam3-frames", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny models: checks the harness only")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS in each row's process")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    models = build_models(Path(args.cache_dir), args.tiny, args.sam3)
    if args.child:
        result = sam3_row(args.child, models, args.sam3_frames) if args.child.startswith("sam3") else \
            row(args.child, models, sorted(args.checkpoints), args.detect_every, args.max_objects)
        print(json.dumps(result))
        return
    started = time.time()
    results = [run_child(args, name) for name in args.rows]
    print(f"\n{'tiny' if args.tiny else 'full-size'} models, {VIDEO.name} looped, checkpoints {args.checkpoints}, "
          f"detect every {args.detect_every}, at most {args.max_objects} objects; 1-min load average at the end: {os.getloadavg()[0]:.2f}\n")
    if results:
        print("| row | frames | objects/frame | seconds | frames/s | RSS GiB | peak RSS GiB |\n|---|---|---|---|---|---|---|")
    for result in results:
        for m in result.get("marks", []):
            print(f"| {result['row']} | {m['frames']} | {m['objects']:.1f} | {m['seconds']:.1f} | {m['frames'] / m['seconds']:.2f} | "
                  f"{m['rss_gib']:.2f} | {m['peak_rss_gib']:.2f} |")
        if "error" in result:
            print(f"| {result['row']} | error: {result['error']} | | | | | |")
    if args.sam3:
        ours, separate = (run_child(args, name) for name in ("sam3-ours", "sam3-separate"))
        print(f"\nSAM 3 video, {args.sam3_frames} frames, {len(PHRASES)} phrases: one session {ours.get('seconds')} s, "
              f"one session per phrase {separate.get('seconds')} s"
              + (f": {separate['seconds'] / ours['seconds']:.2f}x" if "seconds" in ours and "seconds" in separate else
                 f" ({ours.get('error') or separate.get('error')})"))
    print(f"\ntotal {time.time() - started:.0f} s; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
