"""Each video export read back by a reader we did not write: motmetrics (MOT: MOTA 1.0 with the fakes against
the synthetic ground truth), pycocotools (MOTS and YouTube-VIS RLE), Pillow (16-bit id maps), PyAV (MP4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from video_fakes import ColourDetector, ColourTracker
from video_scenes import scene

from grounded.errors import InputError
from grounded.ontology import Ontology
from grounded.utils.masks import mask_box
from grounded.video.export import check_formats, export_video, id_map
from grounded.video.frames import FrameArray
from grounded.video.predictor import VideoPredictor
from grounded.video.records import ChunkStore

FRAMES = 24


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """The synthetic scene tracked by the fakes in two chunks, exported in every format."""
    frames, truth = scene(frames=FRAMES)
    out = tmp_path_factory.mktemp("export")
    store = ChunkStore(out)
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker(), detect_every=4,
                                             lost_frames=3, chunk_frames=14, chunk_overlap=4)
    ids = {}  # ground-truth id -> track id, from the masks
    for index, detections in predictor.track(frames, "car, person", store=store):
        for k, track in enumerate(detections.tracker_id):
            gt = [g for g, m in truth[index].items() if np.array_equal(m, detections.mask[k])]
            ids.setdefault(gt[0], int(track))
    source = FrameArray(frames, fps=10)
    written = export_video(store, source, out, Ontology.from_classes("car, person"), name="synthetic")
    return frames, truth, ids, out, written


@pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")  # motmetrics 1.4 under pandas 3
def test_mot_read_by_motmetrics_gives_mota_1(tracked, tmp_path, monkeypatch):
    frames, truth, ids, out, written = tracked
    # motmetrics 1.4 calls np.asfarray, removed in NumPy 2: restore it for its own IoU, the only call it needs
    monkeypatch.setattr(np, "asfarray", lambda a, dtype=np.float64: np.asarray(a, dtype=dtype), raising=False)
    mm = pytest.importorskip("motmetrics")
    gt_path = tmp_path / "gt.txt"
    with open(gt_path, "w") as handle:
        for index, objects in enumerate(truth):
            for gid, mask in sorted(objects.items()):
                x0, y0, x1, y1 = mask_box(mask)
                handle.write(f"{index + 1},{gid},{x0:g},{y0:g},{x1 - x0:g},{y1 - y0:g},1,-1,-1,-1\n")
    gt = mm.io.loadtxt(str(gt_path), fmt="mot15-2D")
    ours = mm.io.loadtxt(written["mot"], fmt="mot15-2D")
    accumulator = mm.utils.compare_to_groundtruth(gt, ours, "iou", distth=0.5)
    summary = mm.metrics.create().compute(accumulator, metrics=["mota", "num_switches", "num_false_positives",
                                                                "num_misses"], name="fake")
    assert summary.loc["fake"].tolist() == [1.0, 0, 0, 0]


def test_mots_and_id_maps_read_by_pycocotools_and_pillow(tracked):
    from PIL import Image
    from pycocotools import mask as mask_utils

    frames, truth, ids, out, written = tracked
    lines = open(written["mots"]).read().splitlines()
    assert len(lines) == sum(len(t) for t in truth)
    classes = {1: 1, 2: 2, 3: 1}  # ground-truth id -> class id + 1 (car 1, person 2)
    for line in lines:
        frame, track, class_id, height, width, rle = line.split(" ")
        mask = mask_utils.decode({"size": [int(height), int(width)], "counts": rle.encode()}).astype(bool)
        gid = next(g for g, t in ids.items() if t == int(track))
        assert np.array_equal(mask, truth[int(frame)][gid]) and int(class_id) == classes[gid]
    maps = sorted((out / "idmaps").glob("*.png"))
    assert len(maps) == FRAMES
    for index, path in enumerate(maps):
        image = Image.open(path)
        assert image.mode.startswith("I;16") or image.mode == "I"
        values = np.asarray(image)
        expected = np.zeros(values.shape, dtype=np.int64)
        for gid, mask in truth[index].items():
            expected[mask] = ids[gid]
        assert np.array_equal(values, expected)


def test_ytvis_json_read_by_pycocotools(tracked):
    from pycocotools import mask as mask_utils

    frames, truth, ids, out, written = tracked
    data = json.loads(open(written["ytvis"]).read())
    video = data["videos"][0]
    assert (video["length"], video["height"], video["width"]) == (FRAMES, 64, 96)
    assert video["file_names"][3] == "synthetic/000003.jpg"
    assert [c["name"] for c in data["categories"]] == ["car", "person"]
    assert sorted(a["id"] for a in data["annotations"]) == sorted(ids.values())
    for annotation in data["annotations"]:
        gid = next(g for g, t in ids.items() if t == annotation["id"])
        for index, rle in enumerate(annotation["segmentations"]):
            if gid not in truth[index]:
                assert rle is None and annotation["bboxes"][index] is None
                continue
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
            assert np.array_equal(mask, truth[index][gid])
            assert annotation["areas"][index] == int(truth[index][gid].sum())


def test_mp4_read_by_pyav(tracked):
    av = pytest.importorskip("av")
    frames, truth, ids, out, written = tracked
    with av.open(written["mp4"]) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        rate = container.streams.video[0].average_rate
    assert len(decoded) == FRAMES and decoded[0].shape == (64, 96, 3) and rate == 10
    drawn = decoded[5].astype(int)
    mask = truth[5][1]
    assert np.abs(drawn[mask] - frames[5][mask].astype(int)).mean() > 20  # a mask colour is drawn over the car
    assert np.abs(drawn[~np.any(list(truth[5].values()), axis=0)]).mean() < 40  # the background stays dark


def test_odd_sized_video_gets_an_even_mp4(tmp_path):
    av = pytest.importorskip("av")
    frames, _ = scene(frames=4, hw=(33, 47))
    store = ChunkStore(tmp_path)
    predictor = VideoPredictor(detector=ColourDetector(), segmenter=ColourTracker())
    list(predictor.track(frames, "car", store=store))
    written = export_video(store, FrameArray(frames), tmp_path, Ontology.from_classes("car"), formats=["mp4", "mot"])
    with av.open(written["mp4"]) as container:
        shapes = {f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)}
    assert shapes == {(34, 48, 3)} and set(written) == {"mp4", "mot"}


def test_id_map_paints_small_objects_over_large_and_formats_are_checked():
    big = np.zeros((4, 4), bool)
    big[:, :] = True
    small = np.zeros((4, 4), bool)
    small[1:3, 1:3] = True
    out = id_map([small, big], [9, 300], (4, 4))
    assert out.dtype == np.uint16 and out[0, 0] == 300 and out[1, 1] == 9
    with pytest.raises(InputError, match="unknown video export format"):
        check_formats(["mot", "avi"])
