"""Tiled key-frame detection in tracking (``tile``, ``--tile``): the detector + video segmenter way runs the
detector over slices of each key frame through grounded/pipeline/tiled.py's merge; SAM 3 video refuses it; the
tile settings are part of a run's identity; the command line with tiny real models writes every output."""

from __future__ import annotations

import json

import numpy as np
import pytest
from video_fakes import ColourConcept, ColourDetector, ColourTracker
from video_scenes import Mover, scene, write_clip, write_frames

import grounded
from grounded.cli import main
from grounded.config import TileOptions
from grounded.errors import InputError
from grounded.ontology import Ontology
from grounded.pipeline.tiled import plan_slices
from grounded.video.predictor import VideoPredictor

HW = (64, 96)
TILING = {"tile": 32, "tile_overlap": 0.25, "tile_whole": False}  # 32 px slices, 8 px overlap, no whole frame
SLICES = 12  # 3 rows (y 0, 24, 32) x 4 columns (x 0, 24, 48, 64)
CAR = Mover(1, (230, 20, 20), (12, 24), (8.0, 20.0), (0.0, 0.5))  # x 20..44 at frame 0: cut at x 24 and 32
PERSON = Mover(2, (20, 220, 30), (10, 8), (40.0, 70.0), (0.0, 0.0))
OUTPUTS = {"mot.txt", "mots.txt", "ytvis.json", "tracked.mp4", "status.json", "idmaps", "chunks"}


class BoxTracker(ColourTracker):
    """ColourTracker recording the boxes each step is given (frame index -> boxes, key frames only)."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: dict[int, list[list[float]]] = {}

    def step(self, session, frame_index, frame, boxes_xyxy, new_ids):
        if len(boxes_xyxy):
            self.boxes[frame_index] = np.asarray(boxes_xyxy).tolist()
        return super().step(session, frame_index, frame, boxes_xyxy, new_ids)


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_a_box_cut_by_slice_edges_is_merged_into_one_track():
    frames, truth = scene(frames=9, hw=HW, movers=(CAR, PERSON))
    ontology = Ontology.from_classes("car, person")
    slices = plan_slices(ColourDetector(), HW, TileOptions(**TILING))
    assert len(slices) == SLICES
    pieces = [ColourDetector()._detect(np.ascontiguousarray(frames[0][y0:y1, x0:x1]), ontology) for
              x0, y0, x1, y1 in slices]
    cut = [p.xyxy[list(p.data["class_name"]).index("car")] for p in pieces if "car" in p.data["class_name"]]
    assert len(cut) == 2 and all(x1 - x0 < 24 for x0, _, x1, _ in cut)  # no slice holds the car whole

    detector, tracker = ColourDetector(), BoxTracker()
    predictor = VideoPredictor(detector=detector, segmenter=tracker, detect_every=4, **TILING)
    results = list(predictor.track(frames, "car, person"))
    assert detector.calls == 3 * SLICES  # key frames 0, 4, 8: the slices only (tile_whole=False)
    for index in (0, 4, 8):  # one merged box per object, the car's its whole box
        assert sorted(tracker.boxes[index]) == sorted([_box(truth[index][1]), _box(truth[index][2])])
    car_ids = set()
    for (_, detections), gt in zip(results, truth, strict=True):
        car = [k for k in range(len(detections)) if detections.data["class_name"][k] == "car"]
        assert len(car) == 1 and np.array_equal(detections.mask[car[0]], gt[1])
        car_ids.add(int(detections.tracker_id[car[0]]))
    assert len(car_ids) == 1
    assert predictor.describe()["tiling"] == {**TILING, "tile_batch": None}
    assert "tiling" not in VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker()).describe()


def test_auto_leaves_frames_the_detector_sees_whole_untiled():
    frames, _ = scene(frames=2, hw=HW)
    detector = ColourDetector()  # reads every frame at its own size: "auto" never slices
    results = list(VideoPredictor(detector=detector, segmenter=ColourTracker(), tile="auto").track(frames, "car"))
    assert detector.calls == 1 and len(results) == 2


def test_tiling_a_concept_video_model_is_refused(tmp_path, capsys):
    with pytest.raises(InputError, match="concept video model 'colour-concept' has none .* --detector \\+ --segmenter"):
        VideoPredictor(model=ColourConcept(), tile="auto")
    VideoPredictor(model=ColourConcept(), tile_overlap=0.3)  # tiling off: nothing to refuse
    frames, _ = scene(frames=2, hw=HW)
    folder = write_frames(tmp_path / "frames", frames)
    code = main(["track", str(folder), "car", "--out", str(tmp_path / "out"), "--model", "some/sam3-video",
                 "--offline", "--tile", "auto"])
    assert code == 2 and "tile='auto': tiling runs a detector" in capsys.readouterr().err  # before any load


def test_other_tile_settings_are_refused_on_resume(tmp_path):
    frames, _ = scene(frames=6, hw=HW, movers=(CAR, PERSON))
    folder = write_frames(tmp_path / "frames", frames)
    out = tmp_path / "out"

    def run(**tiling):
        predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(), detect_every=4, **tiling)
        return grounded.track(folder, "car, person", out=out, predictor=predictor, formats=["mot"])

    assert run(**TILING)["failed"] == 0
    assert json.loads((out / "run.json").read_text())["model"]["tiling"]["tile"] == 32
    assert run(**TILING)["failed"] == 0  # the same settings: resumed (finished, nothing to do)
    for other in ({**TILING, "tile": 48}, {**TILING, "tile_overlap": 0.5}, {}):
        with pytest.raises(InputError, match="other settings \\(model changed\\)"):
            run(**other)


@pytest.fixture(scope="module")
def tiny_sam2_video(tmp_path_factory):
    pytest.importorskip("torchvision")
    from grounded.testing.tiny_published import build_tiny_sam2_video

    return build_tiny_sam2_video(tmp_path_factory.mktemp("tiny") / "sam2_video", tracking=True)


def test_command_line_tiles_key_frames_with_tiny_models(tiny_model_dirs, tiny_sam2_video, tmp_path, capsys):
    frames, _ = scene(frames=6, hw=HW)
    clip = write_clip(tmp_path / "clip.mkv", frames)
    out = tmp_path / "out"
    code = main(["track", str(clip), "car, person", "--out", str(out), "--detector", str(tiny_model_dirs[0]),
                 "--segmenter", str(tiny_sam2_video), "--offline", "--box-threshold", "0.2", "--text-threshold", "0",
                 "--max-detections", "3", "--detect-every", "3", "--no-progress", "--tile", "32",
                 "--tile-overlap", "0.25"])
    assert code == 0, capsys.readouterr().err
    folder = out / "clip.mkv"
    assert {p.name for p in folder.iterdir()} == OUTPUTS
    status = json.loads((folder / "status.json").read_text())
    assert status["done"] and status["frames"] == 6 and status["tracks"] >= 1
    tiling = json.loads((out / "run.json").read_text())["model"]["tiling"]
    assert tiling == {"tile": 32, "tile_overlap": 0.25, "tile_whole": True, "tile_batch": None}
