"""Tiled inference: slices equal SAHI's, merging equals SAHI's GREEDYNMM, and on a synthetic 6000 x 4000 image
with fake backends (tests/pipeline/conftest.py) objects cut by slice edges come out whole, at full resolution."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from tiling_fakes import draw, objects_in

from grounded.config import SegmentOptions, TileOptions
from grounded.errors import InputError
from grounded.pipeline import tiling
from grounded.pipeline.selection import select_boxes
from grounded.pipeline.tiled import TiledPredictor, with_tiling
from grounded.pipeline.tiling import (
    candidate_pairs,
    compact_masks,
    crop_regions,
    greedy_nmm,
    input_side,
    overlap,
    slice_boxes,
    union_masks,
)

HW = (4000, 6000)
OBJECTS = {  # id -> XYXY; ids 1, 3, 5 are class 1 and 2, 4 class 0 of a two-class prompt
    1: (700, 100, 1300, 300),  # cut by the edges of the first two 1024-px slices
    2: (5000, 500, 5024, 524),  # small, whole in two overlapping slices
    3: (5990, 3993, 6000, 4000),  # 10 x 7 in the bottom-right corner
    4: (2000, 1200, 4500, 3300),  # larger than any slice
    5: (150, 3800, 180, 3830),
}
PROMPT = "car . wheel"


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return draw(HW, OBJECTS)


def _by_box(found: sv.Detections) -> dict[tuple, int]:
    return {tuple(int(v) for v in box): i for i, box in enumerate(found.xyxy)}


def _assert_objects(found: sv.Detections, image: np.ndarray, objects: dict[int, tuple]) -> None:
    """One detection per object, its box the object's and its mask exactly the object's pixels, full size."""
    assert isinstance(found.mask, sv.CompactMask) and found.mask.shape == (len(found), *image.shape[:2])
    rows = _by_box(found)
    assert set(rows) == set(objects.values()), sorted(rows)
    for oid, box in objects.items():
        i = rows[box]
        assert found.class_id[i] == oid % 2
        x0, y0, x1, y1 = box
        assert found.mask.area[i] == (x1 - x0) * (y1 - y0)
        assert found.mask[i][y0:y1, x0:x1].all()


# -------------------------------------------------------------------------------------------------- slices
@pytest.mark.parametrize("hw, size, ratio", [
    ((4000, 6000), (1024, 1024), 0.2), ((3001, 4999), (1000, 1000), 0.0), ((513, 777), (128, 128), 0.25),
    ((100, 6000), (800, 800), 0.2), ((999, 1001), (333, 500), 0.1), ((64, 64), (128, 128), 0.2),
    ((4000, 6000), (800, 800), 0.5), ((1, 1), (32, 32), 0.0), ((1333, 800), (256, 320), 0.75),
])
def test_slice_coordinates_equal_sahi(hw, size, ratio):
    slicing = pytest.importorskip("sahi.slicing")
    expected = slicing.get_slice_bboxes(hw[0], hw[1], size[0], size[1], overlap_height_ratio=ratio,
                                        overlap_width_ratio=ratio)
    got = slice_boxes(hw, size, ratio)
    assert got.tolist() == expected
    covered = np.zeros(hw, dtype=bool)
    for x0, y0, x1, y1 in got:
        covered[y0:y1, x0:x1] = True
    assert covered.all()  # every pixel is in a slice, odd sizes and overlap 0 included


# -------------------------------------------------------------------------------------------------- merging
def _random_boxes(n: int, seed: int, extent: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, extent, (n, 2))
    wh = rng.integers(1, 300, (n, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1).astype(np.float64)
    return xyxy, rng.choice([0.3, 0.5, 0.7, 0.9], n) + rng.integers(0, 3, n) * 0.01, rng.integers(0, 3, n)


@pytest.mark.parametrize("n, small", [(300, 2048), (700, 10)])  # every pair compared / the grid
@pytest.mark.parametrize("metric, threshold", [("ios", 0.5), ("iou", 0.3)])
def test_greedy_nmm_equals_sahi(n, small, metric, threshold, monkeypatch):
    pytest.importorskip("sahi")
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    monkeypatch.setattr(tiling, "_SMALL", small)
    xyxy, scores, classes = _random_boxes(n, seed=n)
    predictions = [ObjectPrediction(bbox=box.tolist(), category_id=int(c), score=float(s), category_name=str(c))
                   for box, s, c in zip(xyxy, scores, classes, strict=True)]
    merged = GreedyNMMPostprocess(match_threshold=threshold, match_metric=metric.upper(),
                                  class_agnostic=False)(predictions)
    expected = sorted((*np.round(p.bbox.to_xyxy(), 3), round(p.score.value, 6), p.category.id) for p in merged)
    boxes, groups = greedy_nmm(xyxy, scores, classes, threshold, metric)
    got = sorted((*np.round(box, 3), round(float(scores[g[0]]), 6), int(classes[g[0]]))
                 for box, g in zip(boxes, groups, strict=True))
    assert len(got) < n and got == expected
    assert all(len({int(classes[m]) for m in g}) == 1 for g in groups)  # class-aware


def test_candidate_pairs_hold_every_intersecting_pair(monkeypatch):
    monkeypatch.setattr(tiling, "_SMALL", 10)
    xyxy, _, _ = _random_boxes(600, seed=3, extent=2000)
    xyxy[0] = [0, 0, 2300, 2300]  # one box over everything
    i, j = np.triu_indices(len(xyxy), 1)
    touching = overlap(xyxy[i], xyxy[j], "iou") > 0
    pairs = {tuple(p) for p in candidate_pairs(xyxy).tolist()}
    assert {(a, b) for a, b in zip(i[touching].tolist(), j[touching].tolist(), strict=True)} <= pairs


def test_selection_over_the_best_boxes_equals_selection_over_all():
    xyxy, scores, classes = _random_boxes(3000, seed=5)
    found = sv.Detections(xyxy=xyxy.astype(np.float32), confidence=(scores + np.arange(3000) * 1e-6).astype(np.float32),
                          class_id=classes, data={"class_name": classes.astype(str), "phrase": classes.astype(str)})
    for options in (SegmentOptions(max_detections=50), SegmentOptions(max_detections=600, nms="agnostic"),
                    SegmentOptions(nms="none", max_detections=7)):
        got, expected = TiledPredictor._select(found, options), select_boxes(found, options)
        assert got.xyxy.tolist() == expected.xyxy.tolist()


# ----------------------------------------------------------------------------------- windows and masks
def test_crop_regions_serve_every_box_once_with_context():
    xyxy = np.array([[10, 10, 40, 40], [100, 90, 130, 140], [900, 900, 960, 990], [0, 0, 3000, 2000],
                     [2990, 1990, 3000, 2000], [400, 400, 420, 420]], dtype=np.float64)
    regions = crop_regions(xyxy, (2000, 3000), side=512)
    served = np.concatenate([members for _, members in regions])
    assert sorted(served.tolist()) == list(range(len(xyxy)))
    for (x0, y0, x1, y1), members in regions:
        assert 0 <= x0 < x1 <= 3000 and 0 <= y0 < y1 <= 2000
        big = (x1 - x0, y1 - y0) == (3000, 2000)
        assert big or (x1 - x0, y1 - y0) == (512, 512)
        assert big == (3 in members) and (not big or len(members) == 1)  # small boxes stay at full resolution
        for m in members:
            bx0, by0, bx1, by1 = xyxy[m]
            assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1
    assert len(regions) == 4  # boxes 0, 1 and 5 share one window, 2 and 4 get one each, the large one its own


def test_compact_and_united_masks_equal_dense():
    rng = np.random.default_rng(0)
    local = rng.random((4, 50, 70)) > 0.7
    local[2] = False  # an empty mask
    masks = compact_masks(local, (30, 20), (200, 300))
    dense = np.zeros((4, 200, 300), dtype=bool)
    dense[:, 20:70, 30:100] = local
    assert masks.shape == (4, 200, 300) and np.array_equal(masks.to_dense(), dense)
    united = union_masks(masks, [[0, 1], [2], [3, 2, 0]])
    assert np.array_equal(united.to_dense(), np.stack([dense[0] | dense[1], dense[2], dense[3] | dense[0]]))


def test_input_sides_from_the_backends_input_sizes(tiny_model_dirs, fake_predictor):
    predictor = fake_predictor()
    assert predictor.detector.input_size((4000, 6000)).resized == (800, 1200)  # short side 800, long <= 1333
    assert predictor.detector.input_size((1000, 9000)).resized == (148, 1333)
    assert input_side(predictor.detector) == 800 and input_side(predictor.segmenter) == 1024
    from grounded import Predictor

    tiny = Predictor(*map(str, tiny_model_dirs))
    assert tiny.detector.input_size((4000, 6000)).resized == (128, 192) and input_side(tiny.segmenter) == 128


def test_tile_options_are_checked():
    assert TileOptions(tile="640").tile == 640 and not TileOptions().enabled
    for bad in ({"tile": 16}, {"tile": "big"}, {"tile": True}, {"tile_overlap": 1.0}, {"tile_overlap": -0.1},
                {"tile_batch": 0}, {"tile_whole": "yes"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            TileOptions(**bad)


# -------------------------------------------------------------------------------- fake backends, 6000 x 4000
def test_cut_objects_come_out_whole_at_full_resolution(fake_predictor, scene):
    predictor = fake_predictor()
    tiled = TiledPredictor(predictor, tile=1024)
    found = tiled.segment_batch([scene], PROMPT)[0]
    _assert_objects(found, scene, OBJECTS)
    views = predictor.detector.views
    assert views[0] == (800, 1200) and set(views[1:]) == {(1024, 1024)}  # the whole image, reduced, then slices
    assert len(views) == 1 + len(slice_boxes(HW, (1024, 1024), 0.2))
    assert predictor.segmenter.encoded == len(OBJECTS)  # one window each: they lie far apart


def test_tiled_equals_untiled_where_the_untiled_sees_everything(fake_predictor, scene):
    predictor = fake_predictor()  # the fakes see every pixel of whatever they are given: untiled is exact here
    untiled = predictor.segment_batch([scene], PROMPT)[0]
    tiled = TiledPredictor(predictor, tile=1024).segment_batch([scene], PROMPT)[0]
    rows = _by_box(untiled)
    assert set(_by_box(tiled)) == set(rows)
    for i, box in enumerate(tiled.xyxy):
        j = rows[tuple(int(v) for v in box)]
        assert (tiled.confidence[i], tiled.class_id[i], tiled.data["phrase"][i]) == (
            untiled.confidence[j], untiled.class_id[j], untiled.data["phrase"][j])
        assert np.array_equal(tiled.mask[i], untiled.mask[j])


@pytest.mark.parametrize("tile", [6000, 8192, "auto"])
def test_tiles_as_large_as_the_image_give_the_untiled_result(fake_predictor, tile):
    predictor = fake_predictor()
    image = draw((700, 800) if tile == "auto" else HW, {1: (10, 10, 50, 40), 2: (300, 200, 420, 260)})
    tiled = TiledPredictor(predictor, tile=tile)
    assert tiled.slices(image.shape[:2]) is None
    got = tiled.segment_batch([image], PROMPT)[0]
    expected = predictor.segment_batch([image], PROMPT)[0]
    assert got.xyxy.tolist() == expected.xyxy.tolist() and np.array_equal(got.mask, expected.mask)
    assert predictor.detector.views == [image.shape[:2]] * 2  # no slices, no whole-image pass


def test_auto_tiles_only_what_the_detector_would_shrink(fake_predictor):
    tiled = TiledPredictor(fake_predictor(), tile="auto")
    assert tiled.slices((800, 1333)) is None and tiled.slices((600, 900)) is None
    assert tiled.slices((800, 1334)).tolist() == slice_boxes((800, 1334), (800, 800), 0.2).tolist()
    assert len(tiled.slices(HW)) == len(slice_boxes(HW, (800, 800), 0.2))


def test_overlap_zero_and_odd_sizes(fake_predictor):
    hw, objects = (3001, 4999), {1: (900, 500, 1100, 600), 2: (3950, 1500, 4100, 1600), 4: (10, 2995, 20, 3001)}
    image = draw(hw, objects)  # object 1 is cut exactly at x = 1000; object 2 lies on the last slice's overlap
    with_whole = TiledPredictor(fake_predictor(), tile=1000, tile_overlap=0.0)
    _assert_objects(with_whole.segment_batch([image], PROMPT)[0], image, objects)
    # without overlap and without the whole image nothing joins the halves of a cut object: two instances
    halves = TiledPredictor(fake_predictor(), tile=1000, tile_overlap=0.0, tile_whole=False)
    found = halves.segment_batch([image], PROMPT)[0]
    assert {(900, 500, 1000, 600), (1000, 500, 1100, 600)} <= set(_by_box(found))


def test_overlap_alone_joins_a_cut_object(fake_predictor, scene):
    tiled = TiledPredictor(fake_predictor(), tile=1024, tile_whole=False)
    found = tiled.segment_batch([scene], PROMPT)[0]
    rows = _by_box(found)
    assert OBJECTS[1] in rows  # its two halves overlap by 204 px: IoS 0.63, merged
    assert found.mask.area[rows[OBJECTS[1]]] == 600 * 200


def test_one_encoder_run_per_window(fake_predictor):
    objects = {i: (1000 + 60 * i, 1000 + 40 * i, 1030 + 60 * i, 1020 + 40 * i) for i in range(1, 9)}
    image = draw(HW, objects)
    predictor = fake_predictor()
    found = TiledPredictor(predictor, tile=1024).segment_batch([image], PROMPT)[0]
    _assert_objects(found, image, objects)
    assert predictor.segmenter.encoded == 1  # eight boxes within 1024 px: one window, one encoder run


def test_concept_segmenter_masks_are_merged_across_slice_edges(fake_predictor, scene):
    predictor = fake_predictor(concept=True)
    found = TiledPredictor(predictor, tile=1008).segment_batch([scene], PROMPT)[0]
    _assert_objects(found, scene, OBJECTS)  # the large object's mask is the union of its slices' masks
    assert np.allclose(found.data["mask_score"], found.confidence)
    alone = TiledPredictor(predictor, tile=1008, tile_whole=False).segment_batch([scene], PROMPT)[0]
    assert OBJECTS[1] in _by_box(alone)


def test_options_and_refusals(fake_predictor, scene):
    tiled = TiledPredictor(fake_predictor(max_detections=2), tile=1024)
    assert len(tiled.segment_batch([scene], PROMPT)[0]) == 2
    assert len(tiled.segment_batch([scene], PROMPT, box_threshold=0.95)[0]) == 0
    with pytest.raises(InputError, match="nothing to tile"):
        tiled.segment_batch([scene], PROMPT, text_tokens="only")
    with pytest.raises(InputError, match="grounded.Predictor"):
        TiledPredictor(object())
    assert with_tiling(tiled.predictor, TileOptions()) is tiled.predictor
    assert tiled.describe()["tiling"] == {"tile": 1024, "tile_overlap": 0.2, "tile_whole": True, "tile_batch": None}


def test_fake_sees_what_is_drawn(scene):
    assert {oid: tuple(int(v) for v in box) for oid, box in objects_in(scene).items()} == OBJECTS
