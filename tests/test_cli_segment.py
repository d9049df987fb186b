"""``grounded segment``: PNG + JSON per image on tiny models by path; one-line errors with exit 2; an image
that fails is reported on one line and the others go on (exit 1)."""

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


def _failing(kind: str, tmp_path, monkeypatch) -> str:
    """An image that fails at ``kind`` (the others in the run are fine); returns its path."""
    path = tmp_path / f"bad_{kind}.png"
    if kind == "missing":
        return str(path)
    if kind == "decode":
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        return str(path)
    pixels = np.full((40, 60, 3), 7, np.uint8)  # recognised by its pixels in the patched stage below
    Image.fromarray(pixels).save(path)
    is_bad = lambda image: image.shape[:2] == (40, 60) and bool((image == 7).all())  # noqa: E731
    if kind == "model":
        from grounded.models.backends.sam import SamSegmenter

        encode = SamSegmenter.encode

        def broken_encode(self, images):
            if any(is_bad(im) for im in images):
                raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\n(second line)")
            return encode(self, images)

        monkeypatch.setattr(SamSegmenter, "encode", broken_encode)
    elif kind == "write":
        import grounded.io.detections_json as dj

        to_json = dj.detections_to_json

        def broken_to_json(dets, hw, *rest, **kw):
            if tuple(hw) == (40, 60):
                raise OSError("No space left on device")
            return to_json(dets, hw, *rest, **kw)

        monkeypatch.setattr(dj, "detections_to_json", broken_to_json)
    return str(path)


@pytest.mark.parametrize("kind, error_type, batch", [
    ("missing", "InputError", "1"), ("decode", "InputError", "1"), ("decode", "InputError", "3"),
    ("model", "RuntimeError", "1"), ("model", "RuntimeError", "3"), ("write", "OSError", "1"),
])
def test_a_failing_image_is_one_line_and_the_others_go_on(tiny_model_dirs, tmp_path, monkeypatch, capsys, kind,
                                                          error_type, batch):
    rng = np.random.default_rng(3)
    good = []
    for name in ["first", "last"]:
        path = tmp_path / f"{name}.png"
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(path)
        good.append(str(path))
    bad = _failing(kind, tmp_path, monkeypatch)
    out = tmp_path / "out"
    code = main(["segment", good[0], bad, good[1], "a wheel", "--out", str(out), "--batch-size", batch,
                 *_models(tiny_model_dirs)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("grounded: error: ")]
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"grounded: error: {bad}: {error_type}: ")
    assert "\n" not in err[0] and "(second line)" not in err[0]
    names = {p.name for p in out.iterdir()}
    assert {"first.json", "first.png", "last.json", "last.png"} <= names
    assert not any(n.startswith("bad_") and n.endswith(".json") for n in names)


def test_all_images_fine_exits_zero_and_all_failing_exits_one(tiny_model_dirs, tmp_path, capsys):
    missing = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert main(["segment", *missing, "a wheel", "--out", str(tmp_path / "o"), *_models(tiny_model_dirs)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[2] for line in err if line.startswith("grounded: error: ")] == missing
