"""``grounded.track`` and ``grounded track``: the iterator, a folder of videos as one resumable run with a fault
boundary per video (kill -9 + rerun gives the same bytes), settings checked on resume, the command line with
tiny real models (also SAM 3 video), and the Ray engine (one video per actor)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from video_fakes import ColourDetector, ColourTracker
from video_scenes import scene, write_clip, write_frames

import grounded
from grounded.cli import main
from grounded.errors import InputError
from grounded.video.predictor import VideoPredictor

HERE = Path(__file__).resolve().parent
OUTPUTS = {"mot.txt", "mots.txt", "ytvis.json", "tracked.mp4", "status.json", "idmaps", "chunks"}
OPTIONS = {"detect_every": 4, "lost_frames": 3, "chunk_frames": 9, "chunk_overlap": 3}


def fakes(**options):
    return VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(), **{**OPTIONS, **options})



def test_an_image_predictors_detector_tracks_without_a_second_load(monkeypatch):
    """One loaded detector serves images and video: the Predictor's own is used as is, nothing is loaded."""
    from grounded.pipeline.predictor import Predictor
    from grounded.testing.fake import FAKE_DETECTOR, FakeDetector, FakeSegmenter

    image = Predictor(detector=ColourDetector(), segmenter=FakeSegmenter())
    frames, truth = scene(frames=8)
    found = image.segment_batch([frames[0]], "car . person .")[0]
    assert len(found) == len(truth[0]) and image.detector.calls == 1

    def no_load(*args, **kwargs):
        raise AssertionError(f"a backend was loaded: {args}")

    monkeypatch.setattr("grounded.models.registry.load_backend", no_load)
    monkeypatch.setattr("grounded.video.backends.load_video_backend", no_load)
    video = VideoPredictor(detector=image.detector, segmenter=ColourTracker(), detect_every=4)
    assert video.detector is image.detector
    results = list(grounded.track(frames, "car . person .", detector=image.detector, segmenter=ColourTracker(),
                                  detect_every=4))
    assert [i for i, _ in results] == list(range(8)) and image.detector.calls == 1 + 2  # frames 0 and 4
    assert len(results[0][1]) == len(truth[0]) and all(d.tracker_id is not None for _, d in results)
    with pytest.raises(InputError, match="already built"):
        VideoPredictor(detector=image.detector, segmenter=ColourTracker(), device="cpu")
    monkeypatch.undo()  # a detector given by name is built as for images (the registry's 'module:Class' names too)
    assert isinstance(VideoPredictor(detector=FAKE_DETECTOR, segmenter=ColourTracker()).detector, FakeDetector)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder of videos: a lossless clip, a folder of frames, a corrupt file and a video without frames."""
    root = tmp_path_factory.mktemp("videos")
    frames, _ = scene(frames=20)
    write_clip(root / "a_clip.mkv", frames)
    write_frames(root / "b_frames", frames[:12])
    (root / "c_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (root / "notes.txt").write_text("not a video")
    return root


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_track_is_an_iterator_of_detections_with_tracker_ids():
    frames, truth = scene(frames=10)
    results = list(grounded.track(frames, "car, person", predictor=fakes()))
    assert [i for i, _ in results] == list(range(10))
    detections = results[9][1]
    assert detections.tracker_id.tolist() == [1, 2, 3] and detections.mask.shape == (3, 64, 96)
    assert set(detections.data) >= {"class_name", "phrase", "mask_score"} and detections.confidence.dtype == np.float32


def test_a_folder_of_videos_is_one_run_with_a_fault_boundary_per_video(videos, tmp_path):
    out = tmp_path / "out"
    summary = grounded.track(videos, "car, person", out=out, predictor=fakes())
    rows = {r["video"]: r for r in summary["videos"]}
    assert sorted(rows) == ["a_clip.mkv", "b_frames", "c_corrupt.mp4"] and summary["failed"] == 1
    assert rows["a_clip.mkv"]["frames"] == 20 and rows["b_frames"]["frames"] == 12
    assert rows["a_clip.mkv"]["tracks"] == 3 and rows["c_corrupt.mp4"]["error"]["type"] == "VideoError"
    assert "not a video FFmpeg can read" in rows["c_corrupt.mp4"]["error"]["reason"]
    for name in ("a_clip.mkv", "b_frames"):
        assert {p.name for p in (out / name).iterdir()} == OUTPUTS
    assert len(list((out / "a_clip.mkv" / "idmaps").glob("*.png"))) == 20
    assert json.loads((out / "summary.json").read_text())["failed"] == 1
    before = tree_bytes(out)
    detector = ColourDetector()
    again = grounded.track(videos, "car, person", out=out,
                           predictor=VideoPredictor(detector=detector, segmenter=ColourTracker(), **OPTIONS))
    assert detector.calls == 0 and again["failed"] == 1  # finished videos are skipped; the corrupt one fails again
    assert tree_bytes(out) == before
    with pytest.raises(InputError, match="other settings"):
        grounded.track(videos, "car", out=out, predictor=fakes())
    grounded.track(videos, "car", out=out, predictor=fakes(), force=True)
    assert json.loads((out / "run.json").read_text())["ontology"]["classes"][0]["name"] == "car"


def test_kill_9_in_the_middle_and_rerun_gives_the_same_files(videos, tmp_path):
    worker = HERE / "video_run_worker.py"
    env = {"PYTHONPATH": f"{HERE.parents[1]}:{HERE}", "PATH": "/usr/bin:/bin"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run([sys.executable, str(worker), str(videos), str(whole)], env=env, timeout=300).returncode == 1
    # the tracker's 40th step: the first video took 26 (overlap frames run in two chunks), so this is frame 10 of
    # the second video, in its second chunk
    first = subprocess.run([sys.executable, str(worker), str(videos), str(killed), "39"], env=env, timeout=300)
    assert first.returncode == 9
    assert json.loads((killed / "a_clip.mkv" / "status.json").read_text())["done"]
    assert (killed / "b_frames" / "chunks" / "000000.json").is_file()
    assert not (killed / "b_frames" / "chunks" / "000001.json").exists()
    assert not (killed / "b_frames" / "status.json").exists()
    assert subprocess.run([sys.executable, str(worker), str(videos), str(killed)], env=env, timeout=300).returncode == 1
    resumed, uninterrupted = tree_bytes(killed), tree_bytes(whole)
    summaries = [json.loads(tree.pop("summary.json")) for tree in (resumed, uninterrupted)]
    assert resumed == uninterrupted and len(resumed) > 40  # chunk records, exports (MP4 included), status files
    assert summaries[0]["videos"] == summaries[1]["videos"]  # (the summaries differ by their "out" only)


@pytest.fixture(scope="module")
def tiny_sam2_video(tmp_path_factory):
    pytest.importorskip("torchvision")
    from grounded.testing.tiny_published import build_tiny_sam2_video

    return build_tiny_sam2_video(tmp_path_factory.mktemp("tiny") / "sam2_video", tracking=True)


def test_command_line_with_tiny_detector_and_sam2_video(tiny_model_dirs, tiny_sam2_video, tmp_path, capsys):
    frames, _ = scene(frames=6)
    clip = write_clip(tmp_path / "clip.mkv", frames)
    detector, _ = tiny_model_dirs
    code = main(["track", str(clip), "car, person", "--out", str(tmp_path / "out"), "--detector", str(detector),
                 "--segmenter", str(tiny_sam2_video), "--offline", "--box-threshold", "0.2", "--text-threshold", "0",
                 "--max-detections", "3", "--detect-every", "3", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "out" / "clip.mkv"
    assert {p.name for p in folder.iterdir()} == OUTPUTS
    status = json.loads((folder / "status.json").read_text())
    assert status["done"] and status["frames"] == 6 and status["tracks"] >= 1
    assert f"{folder}: 6 frames" in capsys.readouterr().out
    code = main(["track", str(clip), "car", "--out", str(tmp_path / "bad"), "--detector", str(detector),
                 "--segmenter", str(detector), "--offline"])
    assert code == 2 and "grounding-dino" in capsys.readouterr().err  # a detector given as the video segmenter


def test_refused_options_and_bad_prompts():
    with pytest.raises(InputError, match="mask_threshold=0.5 is not supported when tracking"):
        fakes(mask_threshold=0.5)
    with pytest.raises(InputError, match="unknown option"):
        fakes(chunk_size=3)
    with pytest.raises(InputError, match="chunk_overlap"):
        fakes(chunk_frames=5, chunk_overlap=5)
    with pytest.raises(InputError, match="not found"):
        grounded.track("no/such/video.mp4", "car", out="unused", predictor=fakes())


@pytest.mark.slow
def test_command_line_with_tiny_sam3_video(tmp_path, capsys, shared):
    pytest.importorskip("torchvision")
    from grounded.testing.tiny_published import build_tiny_sam3_video

    model = build_tiny_sam3_video(tmp_path / "sam3_video", shared("vocab", "clip"), tracking=True)
    frames, _ = scene(frames=6)
    folder = write_frames(tmp_path / "frames", frames)
    code = main(["track", str(folder), "car . person .", "--out", str(tmp_path / "out"), "--model", str(model),
                 "--offline", "--chunk-overlap", "4", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    status = json.loads((tmp_path / "out" / "frames" / "status.json").read_text())
    assert status["done"] and status["frames"] == 6
    assert {p.name for p in (tmp_path / "out" / "frames").iterdir()} == OUTPUTS
    code = main(["track", str(folder), "car", "--out", str(tmp_path / "out2"), "--model", str(model), "--offline",
                 "--box-threshold", "0.5"])
    assert code == 2 and "applies its own detection thresholds" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_tracks_one_video_per_actor(videos, tiny_model_dirs, tiny_sam2_video, tmp_path):
    ray = pytest.importorskip("ray")
    from grounded.video.run import VideoPredictorFactory

    detector, _ = tiny_model_dirs
    factory = VideoPredictorFactory({"detector": str(detector), "segmenter": str(tiny_sam2_video),
                                     "local_files_only": True, "box_threshold": 0.2, "text_threshold": 0.0,
                                     "max_detections": 2, "detect_every": 10})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        summary = grounded.track(videos, "car, person", out=tmp_path / "out", predictor=factory, engine="ray",
                                 workers=1, formats=["mot", "ytvis"])
    finally:
        ray.shutdown()
    rows = {r["video"]: r for r in summary["videos"]}
    assert rows["a_clip.mkv"]["done"] and rows["b_frames"]["done"] and not rows["c_corrupt.mp4"]["done"]
    assert (tmp_path / "out" / "a_clip.mkv" / "mot.txt").is_file()
    assert json.loads((tmp_path / "out" / "b_frames" / "ytvis.json").read_text())["videos"][0]["length"] == 12
