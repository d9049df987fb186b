"""Subprocess for test_tracking.py's kill -9 test: track the synthetic scene into chunk records under OUT.

    python video_resume_worker.py OUT [EXIT_AFTER]

With EXIT_AFTER, the fake tracker ends the process with os._exit(9) after that many steps (no cleanup, no
flush: as kill -9 would); run again without it, the run resumes from the last finished chunk.
"""

from __future__ import annotations

import sys

from video_fakes import ColourDetector, ColourTracker
from video_scenes import scene

from grounded.video.predictor import VideoPredictor
from grounded.video.records import ChunkStore

if __name__ == "__main__":
    out = sys.argv[1]
    exit_after = int(sys.argv[2]) if len(sys.argv) > 2 else None
    frames, _ = scene(frames=40)
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(exit_after),
                                             detect_every=4, lost_frames=3, chunk_frames=9, chunk_overlap=3)
    for _ in predictor.track(frames, "car, person", store=ChunkStore(out)):
        pass
