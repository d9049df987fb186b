"""``grounded segment``: PNG + JSON per image on tiny models by path; one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from grounded.cli import main
from grounded.io.detections_json import detections_from_json


def _models(tiny_model_dirs) -> list[str]:
    det, seg = tiny_model_dirs
    return ["--detector", str(det), "--segmenter", str(seg)]


def test_segment_writes_png_and_json(tiny_model_dirs, photo_path, photo, tmp_path):
    out = tmp_path / "out"
    code = main(["segment", str(photo_path), "a wheel", "--out", str(out), "--box-threshold", "0.2",
                 "--text-threshold", "0", *_models(tiny_model_dirs)])
    assert code == 0
    png, js = out / f"{photo_path.stem}.png", out / f"{photo_path.stem}.json"
    with Image.open(png) as im:
        assert im.size == (photo.shape[1], photo.shape[0])
    obj = json.loads(js.read_text())
    assert (obj["height"], obj["width"]) == photo.shape[:2]
    assert len(obj["detections"]) > 0
    assert {d["class_name"] for d in obj["detections"]} == {"a wheel"}
    dets = detections_from_json(obj)
    assert dets.mask.shape == (len(obj["detections"]), *photo.shape[:2])
    assert [d["area"] for d in obj["detections"]] == dets.mask.reshape(len(dets), -1).sum(1).tolist()


def test_several_images_same_stem_and_batching(tiny_model_dirs, tmp_path):
    rng = np.random.default_rng(1)
    paths = []
    for sub in ["a", "b"]:
        (tmp_path / sub).mkdir()
        path = tmp_path / sub / "img.png"
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "out"
    assert main(["segment", *paths, "car . wheel .", "--out", str(out), "--batch-size", "2",
                 *_models(tiny_model_dirs)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img.json", "img.png", "img_1.json", "img_1.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["segment", "{photo}", "   "], "empty prompt"),
        (["segment", "{photo}"], "give at least one image and a prompt"),
        (["segment", "{tmp}/missing.jpg", "a wheel"], "not found"),
        (["segment", "{photo}", "a wheel", "--detector", "{tmp}/no_model"], "detector model folder"),
        (["segment", "{photo}", "a wheel", "--box-threshold", "3"], "box_threshold must be a number in [0, 1]"),
    ],
)
def test_errors_are_one_clear_line(tiny_model_dirs, photo_path, tmp_path, capsys, args, message):
    args = [a.format(photo=photo_path, tmp=tmp_path) for a in args]
    models = [] if "--detector" in args else _models(tiny_model_dirs)
    code = main([*args, "--out", str(tmp_path / "o"), *models])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("grounded: error: ") and message in err[-1]


def test_unknown_option_exits_non_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "x.jpg", "a wheel", "--colour", "red"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --colour" in capsys.readouterr().err


def test_default_models_offline_fail_with_clear_message(photo_path, tmp_path):
    """The real console script, default model names, no network: exit 2 and a message naming the fix."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "grounded.cli", "segment", str(photo_path), "a wheel",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "IDEA-Research/grounding-dino-tiny" in last and "--detector DIR" in last


def test_help_documents_every_option_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    for flag in ["--out", "--detector", "--segmenter", "--device", "--dtype", "--box-threshold", "--text-threshold",
                 "--nms", "--nms-on", "--multimask", "--max-detections", "--ontology", "--batch-size", "--offline"]:
        assert flag in text
    assert 'grounded segment truck.jpg "a wheel"' in text


def test_json_round_trip_keeps_extra_columns(photo):
    """Extra per-detection columns (e.g. CLIP verification's) survive the JSON form."""
    import supervision as sv

    from grounded.io.detections_json import detections_to_json

    h, w = 20, 30
    mask = np.zeros((2, h, w), bool)
    mask[0, 2:5, 3:9] = True
    mask[1, 10:, 20:] = True
    dets = sv.Detections(
        xyxy=np.array([[3, 2, 9, 5], [20, 10, 30, 20]], np.float32), mask=mask,
        confidence=np.array([0.9, 0.4], np.float32), class_id=np.array([1, 0]),
        data={"class_name": np.array(["car", "wheel"]), "phrase": np.array(["car", "tire"]),
              "mask_score": np.array([0.8, 0.7], np.float32), "verify": np.array(["confirmed", "corrected"]),
              "clip_prob": np.array([0.61, 0.52]), "class_name_detector": np.array(["car", "car"])},
    )
    back = detections_from_json(json.loads(json.dumps(detections_to_json(dets, (h, w)))))
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_array_equal(back.class_id, dets.class_id)
    for key in ["class_name", "phrase", "verify", "class_name_detector"]:
        assert back.data[key].tolist() == dets.data[key].tolist()
    np.testing.assert_allclose(back.data["clip_prob"], [0.61, 0.52])


def test_same_image_given_twice_gets_two_outputs(tiny_model_dirs, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(path)
    out = tmp_path / "out"
    assert main(["segment", str(path), str(path), "a wheel", "--out", str(out), *_models(tiny_model_dirs)]) == 0
    assert (out / "img.json").read_text() == (out / "img_1.json").read_text()
