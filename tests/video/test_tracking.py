"""Tracking logic with fakes on synthetic moving shapes: stable ids, admission by mask IoU, detect every N frames,
lost tracks ending (ids never reused), chunks with overlap and stitching, resume from chunk records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from video_fakes import ColourConcept, ColourDetector, ColourTracker
from video_scenes import DEFAULT_MOVERS, Mover, scene

from grounded.errors import InputError
from grounded.video.chunks import ChunkPlan, Stitcher
from grounded.video.predictor import VideoPredictor
from grounded.video.records import ChunkStore
from grounded.video.tracks import TrackedObject

HERE = Path(__file__).resolve().parent


def run(frames, prompt="car, person", model=None, **options):
    if model is None:
        predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(), **options)
    else:
        predictor = VideoPredictor(model=model, **options)
    return predictor, list(predictor.track(frames, prompt))


def id_map(results, truth) -> dict[int, set[int]]:
    """Ground-truth id -> the track ids whose mask equals its mask exactly, over all frames."""
    seen: dict[int, set[int]] = {}
    for (index, detections), gt in zip(results, truth, strict=True):
        for k, track in enumerate(detections.tracker_id):
            matches = [g for g, mask in gt.items() if np.array_equal(mask, detections.mask[k])]
            assert len(matches) == 1, f"frame {index}: track {track} matches no ground-truth object exactly"
            seen.setdefault(matches[0], set()).add(int(track))
    return seen


def test_ids_are_stable_new_objects_enter_and_lost_ones_end():
    frames, truth = scene(frames=24)
    predictor, results = run(frames, detect_every=4, lost_frames=3)
    assert [i for i, _ in results] == list(range(24))
    ids = id_map(results, truth)
    assert all(len(v) == 1 for v in ids.values()) and len({min(v) for v in ids.values()}) == 3  # one id each
    first = {g: next(i for i, (_, d) in enumerate(results) if min(ids[g]) in d.tracker_id) for g in ids}
    assert first == {1: 0, 2: 0, 3: 8}  # car 3 enters at frame 8 (a detect frame) and gets a new id then
    person = min(ids[2])
    assert all(person not in d.tracker_id for _, d in results[16:])  # it left after frame 15
    d = results[10][1]
    assert set(d.data["class_name"]) == {"car", "person"} and d.mask.shape == (3, 64, 96)
    car = list(d.tracker_id).index(min(ids[1]))
    assert np.array_equal(d.xyxy[car], [4 + 2 * 10, 6, 4 + 2 * 10 + 16, 18])  # tight box of car 1's mask


def test_detect_every_n_frames_and_admission_by_mask_iou():
    frames, truth = scene(frames=24)
    detector = ColourDetector()
    predictor = VideoPredictor(detector=detector, segmenter=ColourTracker(), detect_every=5)
    results = list(predictor.track(frames, "car, person"))
    assert detector.calls == 5  # frames 0, 5, 10, 15, 20
    ids = id_map(results, truth)
    assert all(len(v) == 1 for v in ids.values())  # re-detections of live tracks are never admitted again
    first_car3 = next(i for i, (_, d) in enumerate(results) if min(ids[3]) in d.tracker_id)
    assert first_car3 == 10  # entered at 8, found at the next detection


def test_a_track_lost_for_k_frames_ends_and_its_id_is_not_reused():
    colour = (30, 30, 240)  # a dog, gone for frames 6..11, back from 12
    movers = (Mover(1, colour, (10, 10), (5.0, 5.0), (0.0, 1.0), last=5), Mover(2, colour, (10, 10), (5.0, 17.0), (0.0, 1.0), first=12))
    frames, truth = scene(frames=20, movers=movers)
    _, short = run(frames, "dog", detect_every=4, lost_frames=3)
    ids = id_map(short, truth)
    assert len(ids[1] | ids[2]) == 2 and ids[1] != ids[2]  # ended after 3 lost frames; found again: a new id
    _, patient = run(frames, "dog", detect_every=4, lost_frames=10)
    ids = id_map(patient, truth)
    assert ids[1] == ids[2]  # lost for 6 < 10 frames: the same track


def test_max_objects_bounds_live_tracks():
    frames, _ = scene(frames=12)
    _, results = run(frames, detect_every=1, max_objects=2)
    assert max(len(d) for _, d in results) == 2


@pytest.mark.parametrize("size, overlap", [(10, 3), (7, 2), (24, 5)])
def test_ids_survive_chunk_boundaries(size, overlap):
    frames, truth = scene(frames=24)
    _, whole = run(frames, detect_every=4, lost_frames=3)
    tracker = ColourTracker()
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=tracker, detect_every=4, lost_frames=3,
                                             chunk_frames=size, chunk_overlap=overlap)
    chunked = list(predictor.track(frames, "car, person"))
    assert [i for i, _ in chunked] == list(range(24))
    for (_, a), (_, b) in zip(whole, chunked, strict=True):
        assert a.tracker_id.tolist() == b.tracker_id.tolist() and np.array_equal(a.mask, b.mask)
    assert tracker.max_sessions <= 2 and tracker.sessions_alive == 0  # two sessions at most, in an overlap


def test_concept_model_holding_results_back_across_chunks():
    frames, truth = scene(frames=24)
    _, whole = run(frames, model=ColourConcept(hold_back=3), lost_frames=3)
    _, chunked = run(frames, model=ColourConcept(hold_back=3), lost_frames=3, chunk_frames=9, chunk_overlap=4)
    assert [i for i, _ in chunked] == list(range(24))
    assert [d.tracker_id.tolist() for _, d in whole] == [d.tracker_id.tolist() for _, d in chunked]
    assert all(len(v) == 1 for v in id_map(chunked, truth).values())
    with pytest.raises(InputError, match="hold-back window"):
        VideoPredictor(model=ColourConcept(hold_back=5), chunk_frames=9, chunk_overlap=4)


def test_chunk_plan_owns_every_frame_once():
    for frames in (1, 9, 10, 11, 100, 301):
        plan = ChunkPlan(frames, 10, 3)
        owned = [f for k in range(plan.count()) for f in range(plan.owned_start(k), plan.stop(k))]
        assert owned == list(range(frames))
        assert all(plan.stop(k) - plan.start(k) <= 10 for k in range(plan.count()))


def test_stitcher_is_one_to_one_same_class_and_thresholded():
    def obj(track, class_id, x0, x1):
        mask = np.zeros((10, 20), dtype=bool)
        mask[:, x0:x1] = True
        return TrackedObject(track, class_id, "c", "c", 1.0, 1.0, mask)

    stitcher = Stitcher(0.5)
    for _ in range(3):  # previous ids 7, 8, 9; local tracks 1 (= 7), 2 (other class than 8), 3 (barely overlaps 9)
        stitcher.add([(7, obj(0, 0, 0, 5)), (8, obj(0, 1, 6, 10)), (9, obj(0, 0, 12, 20))],
                     [obj(1, 0, 0, 5), obj(2, 0, 6, 10), obj(3, 0, 16, 18)])
    assert stitcher.solve() == {1: 7}


def _record_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "chunks").glob("*.json"))}


def test_resume_after_an_interruption_gives_the_same_records(tmp_path):
    frames, _ = scene(frames=24)
    options = {"detect_every": 4, "lost_frames": 3, "chunk_frames": 8, "chunk_overlap": 2}
    whole = tmp_path / "whole"
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(), **options)
    assert len(list(predictor.track(frames, "car, person", store=ChunkStore(whole)))) == 24
    assert sorted(_record_bytes(whole)) == [f"{k:06d}.json" for k in range(4)]

    broken = tmp_path / "broken"

    class Crash(Exception):
        pass

    def crashing(stop):
        tracker = ColourTracker()
        step = tracker.step

        def step_or_crash(*args):
            if tracker.steps >= stop:
                raise Crash
            return step(*args)

        tracker.step = step_or_crash
        return VideoPredictor(detector=ColourDetector(), segmenter=tracker, **options)

    with pytest.raises(Crash):
        list(crashing(13).track(frames, "car, person", store=ChunkStore(broken)))
    assert 0 < ChunkStore(broken).finished() < 4
    resumed = list(predictor.track(frames, "car, person", store=ChunkStore(broken)))
    assert resumed[0][0] > 0  # finished chunks are not run again
    assert _record_bytes(broken) == _record_bytes(whole)


def test_kill_9_and_rerun_is_byte_identical(tmp_path):
    worker = HERE / "video_resume_worker.py"
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env_path = f"{HERE.parents[1]}:{HERE}"
    base = [sys.executable, str(worker)]
    env = {"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}
    subprocess.run([*base, str(whole)], check=True, env=env, timeout=120)
    first = subprocess.run([*base, str(killed), "30"], env=env, timeout=120)
    assert first.returncode == 9  # os._exit(9) in the middle of a chunk, as kill -9 would end it
    partial = ChunkStore(killed).finished()
    assert 0 < partial < len(_record_bytes(whole))
    subprocess.run([*base, str(killed)], check=True, env=env, timeout=120)
    assert _record_bytes(killed) == _record_bytes(whole)


def test_default_scene_is_what_the_tests_expect():
    frames, truth = scene(frames=24)
    assert [sorted(t) for t in truth][7:9] == [[1, 2], [1, 2, 3]] and sorted(truth[16]) == [1, 3]
    assert {m.class_name for m in DEFAULT_MOVERS} == {"car", "person"}
