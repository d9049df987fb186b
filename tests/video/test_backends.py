"""Tiny SAM 2 video, EdgeTAM video and SAM 3 video models: grounded's streamed, pruned sessions give what
transformers' own video processor + model calls give on a short synthetic clip; the local SAM 3 post-processing
operations behave as their references (torchvision NMS, OpenCV connected components)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from video_scenes import scene

from grounded.errors import ModelLoadError

pytest.importorskip("torchvision")
FRAMES = 6
HW = (64, 96)


@pytest.fixture(scope="module")
def clip():
    frames, truth = scene(frames=FRAMES, hw=HW)
    boxes = {}
    for gid, mask in truth[0].items():
        ys, xs = np.nonzero(mask)
        boxes[gid] = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return frames, boxes


@pytest.fixture(scope="module")
def video_checkpoints(tmp_path_factory):
    from grounded.testing.tiny_published import build_tiny_edgetam_video, build_tiny_sam2_video

    root = tmp_path_factory.mktemp("tiny_video")
    out = {"sam2_video": build_tiny_sam2_video(root / "sam2_video", tracking=True)}
    try:
        import timm  # noqa: F401

        out["edgetam_video"] = build_tiny_edgetam_video(root / "edgetam_video", tracking=True)
    except ImportError:
        pass
    return out


def _reference_sam2(model, processor, frames, prompts):
    """transformers' calls on the preloaded video: prompts = {frame index: (obj ids, boxes)} -> per frame (ids,
    masks, scores). (A copy of the ids: transformers keeps the list it is given and empties it as it runs them.)"""
    session = processor.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    results = []
    with torch.inference_mode():
        for index in range(len(frames)):
            if index in prompts:
                ids, boxes = prompts[index]
                processor.add_inputs_to_inference_session(session, frame_idx=index, obj_ids=list(ids),
                                                          input_boxes=[boxes])
            out = model(inference_session=session, frame_idx=index)
            masks = processor.post_process_masks([out.pred_masks], original_sizes=[list(HW)], binarize=True)[0][:, 0]
            results.append((list(out.object_ids), masks.numpy(), torch.sigmoid(out.object_score_logits.reshape(-1)).numpy()))
    return results, session


@pytest.mark.parametrize("model_type", ["sam2_video", "edgetam_video"])
def test_sam2_family_matches_transformers_with_a_bounded_session(video_checkpoints, clip, model_type):
    from grounded.models.loading import load_pretrained
    from grounded.video.backends import load_video_backend

    if model_type not in video_checkpoints:
        pytest.skip("EdgeTAM needs timm")
    folder = str(video_checkpoints[model_type])
    backend = load_video_backend(folder, "segmenter", torch.device("cpu"), torch.float32)
    frames, boxes = clip
    prompts = {0: ([11, 12], [boxes[1], boxes[2]]), 4: ([13], [boxes[3] if 3 in boxes else [40, 40, 60, 60]])}
    reference, full = _reference_sam2(backend.model, load_pretrained(type(backend.processor), folder, "segmenter"),
                                      frames, prompts)
    session = backend.start(HW)
    for index, frame in enumerate(frames):
        ids, new_boxes = prompts.get(index, ([], []))
        out = backend.step(session, index, frame, np.asarray(new_boxes, dtype=np.float32), ids)
        ref_ids, ref_masks, ref_scores = reference[index]
        assert out.obj_ids.tolist() == ref_ids
        assert np.array_equal(out.masks, ref_masks) and out.masks.any()
        np.testing.assert_allclose(out.scores, ref_scores, rtol=0, atol=1e-6)
    inference = session.inference
    assert list(inference.processed_frames) == [FRAMES - 1]  # only the current frame's pixels are kept
    window = backend.window
    assert all(min(o["non_cond_frame_outputs"]) >= FRAMES - 1 - window for o in inference.output_dict_per_obj.values())
    assert len(full.processed_frames) == FRAMES  # transformers' own session keeps every frame
    backend.remove(session, [12])
    assert inference.obj_ids == [11, 13] and len(inference.output_dict_per_obj) == 2
    out = backend.step(session, FRAMES, frames[-1], np.zeros((0, 4), np.float32), [])
    assert out.obj_ids.tolist() == [11, 13]


def test_sam3_video_matches_transformers_iterator_with_local_post_processing(tmp_path, clip, shared):
    from transformers import Sam3VideoProcessor

    from grounded.testing.tiny_published import build_tiny_sam3_video
    from grounded.video.backends import load_video_backend, postprocess

    folder = build_tiny_sam3_video(tmp_path / "sam3_video", shared("vocab", "clip"), tracking=True)
    tracker = load_video_backend(str(folder), "model", torch.device("cpu"), torch.float32)
    frames, _ = clip
    phrases = ["car", "person"]
    postprocess.install()  # the reference runs with the same local NMS / hole filling (the hub kernel is unreachable)
    processor = Sam3VideoProcessor.from_pretrained(folder)
    session = processor.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    processor.add_text_prompt(session, phrases)
    reference = []
    for out in tracker.model.propagate_in_video_iterator(session):
        result = processor.postprocess_outputs(session, out)
        labels = [phrases.index(session.prompts[session.obj_id_to_prompt_id[int(i)]]) for i in result["object_ids"]]
        reference.append((int(out.frame_idx), result["object_ids"].tolist(), result["masks"].numpy(),
                          result["scores"].numpy(), labels))
    ours = tracker.start(HW, phrases)
    released = []
    for index, frame in enumerate(frames):
        released += tracker.step(ours, index, frame)
    assert len(released) == FRAMES - tracker.hold_back + 1  # results held back hotstart_delay - 1 frames
    released += tracker.finish(ours)
    assert len(released) == len(reference) == FRAMES
    for out, (index, ids, masks, scores, labels) in zip(released, reference, strict=True):
        assert (out.frame_index, out.obj_ids.tolist(), out.labels.tolist()) == (index, ids, labels)
        assert np.array_equal(out.masks, masks)
        np.testing.assert_allclose(out.scores, scores, rtol=0, atol=1e-6)
    assert any(len(out.obj_ids) for out in released)
    assert len(dict(ours.inference.processed_frames)) == 1  # pixels of the last frame only


def test_local_nms_equals_torchvision_nms():
    from torchvision.ops import box_iou, nms

    from grounded.video.backends.postprocess import LocalCvUtils

    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        xy = torch.rand(40, 2, generator=generator) * 100
        boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=generator) * 40], dim=1)
        scores = torch.rand(40, generator=generator)
        for threshold in (0.1, 0.5, 0.8):
            ours = LocalCvUtils.generic_nms(box_iou(boxes, boxes), scores, threshold)
            assert ours.tolist() == nms(boxes, scores, threshold).tolist()


def test_local_connected_components_equal_opencv():
    cv2 = pytest.importorskip("cv2")
    from grounded.video.backends.postprocess import LocalCvUtils

    rng = np.random.default_rng(0)
    masks = (rng.random((3, 1, 37, 50)) > 0.55).astype(np.uint8)
    labels, counts = LocalCvUtils.cc_2d(torch.from_numpy(masks))
    assert labels.shape == counts.shape == masks.shape and counts.dtype == torch.int32
    for b in range(3):
        found, cv_labels, stats, _ = cv2.connectedComponentsWithStats(masks[b, 0], connectivity=8)
        expected = np.where(cv_labels > 0, stats[cv_labels, cv2.CC_STAT_AREA], 0)
        assert np.array_equal(counts[b, 0].numpy(), expected)
        assert labels[b, 0].max().item() == found - 1


def test_sam3_hole_filling_and_nms_run_with_the_local_kernel():
    from transformers.models.sam3_video import modeling_sam3_video as sam3

    from grounded.video.backends import postprocess

    postprocess.install()
    scores = torch.full((1, 1, 20, 20), -1.0)
    scores[0, 0, 2:18, 2:18] = 1.0  # an object ...
    scores[0, 0, 8:10, 8:10] = -1.0  # ... with a 4-pixel hole
    scores[0, 0, 0, 19] = 1.0  # and a 1-pixel sprinkle apart from it
    filled = sam3.fill_holes_in_mask_scores(scores.clone(), max_area=5)
    assert filled[0, 0, 9, 9] == 0.1 and filled[0, 0, 0, 19] == -0.1 and filled[0, 0, 5, 5] == 1.0
    kept_big = sam3.fill_holes_in_mask_scores(scores.clone(), max_area=3)
    assert kept_big[0, 0, 9, 9] == -1.0  # a hole larger than max_area stays
    masks = torch.zeros(3, 10, 10)
    masks[0, :5], masks[1, :4], masks[2, 6:] = 1.0, 1.0, 1.0  # 1 is mostly inside 0
    keep = sam3.nms_masks(torch.tensor([0.9, 0.8, 0.7]), masks, prob_threshold=0.5, iou_threshold=0.5)
    assert keep.tolist() == [True, False, True]


def test_install_refuses_when_transformers_lacks_the_hook(monkeypatch):
    from transformers.models.sam3_video import modeling_sam3_video as sam3

    from grounded.video.backends import postprocess

    monkeypatch.delattr(sam3, "cv_utils_kernel")
    with pytest.raises(ModelLoadError, match="refused"):
        postprocess.install()


def test_image_checkpoints_and_wrong_flags_are_refused(tmp_path, video_checkpoints):
    from grounded.testing.tiny_segmenters import build_tiny_sam2
    from grounded.video.backends import load_video_backend

    image = build_tiny_sam2(tmp_path / "sam2_image")
    with pytest.raises(ModelLoadError, match="lacks the video memory weights"):
        load_video_backend(str(image), "segmenter", torch.device("cpu"), torch.float32)
    with pytest.raises(ModelLoadError, match="pass it with --segmenter"):
        load_video_backend(str(video_checkpoints["sam2_video"]), "model", torch.device("cpu"), torch.float32)
