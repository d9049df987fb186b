"""Subprocess for test_run.py's kill -9 test: ``grounded.track`` a folder of videos into OUT with the fakes.

    python video_run_worker.py VIDEOS OUT [EXIT_AFTER]

With EXIT_AFTER, the fake tracker ends the process with os._exit(9) after that many frames (as kill -9 would);
run again without it, the run resumes (finished videos skipped, the interrupted one from its last chunk).
"""

from __future__ import annotations

import sys

from video_fakes import ColourDetector, ColourTracker

from grounded.video.predictor import VideoPredictor
from grounded.video.run import track

if __name__ == "__main__":
    videos, out = sys.argv[1], sys.argv[2]
    exit_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(exit_after),
                                             detect_every=4, lost_frames=3, chunk_frames=9, chunk_overlap=3)
    summary = track(videos, "car, person", out=out, predictor=predictor)
    sys.exit(1 if summary["failed"] else 0)
