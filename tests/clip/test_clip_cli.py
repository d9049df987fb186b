"""``grounded train-adapter`` end to end on tiny models and real photos, then text-token masks on a real photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grounded.cli import main

PHOTOS = ("truck.jpg", "car_image.jpg", "gsam2_cars.jpg")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, shared_images) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (folder / name).symlink_to(shared_images / name)
    return folder


def _model_args(clip_models) -> list[str]:
    return ["--detector", str(clip_models["detector"]), "--segmenter", str(clip_models["segmenter"]), "--device", "cpu",
            "--offline", "--box-threshold", "0.2", "--text-threshold", "0.2", "--max-detections", "5"]


def test_train_adapter_cli_then_text_tokens_on_a_real_photo(tmp_path, photo_dir, clip_models, capsys):
    out = tmp_path / "adapter"
    args = ["train-adapter", str(photo_dir), "--classes", "car, wheel", "--out", str(out), "--clip",
            str(clip_models["clip"]), "--steps", "30", "--batch-size", "2", "--warmup", "3", "--hidden", "64",
            *_model_args(clip_models)]
    assert main([*args, "--stop-after", "10"]) == 0
    assert "stopped at step 10 of 30" in capsys.readouterr().out
    assert main(args) == 0  # resumes
    printed = capsys.readouterr().out
    assert "adapter:" in printed and "30 steps" in printed and "mean IoU with the teacher" in printed
    record = json.loads((out / "adapter.json").read_text())
    assert record["training"]["steps"] == 30 and record["config"]["hidden_dim"] == 64

    from grounded import Predictor
    from grounded.utils.images import load_image

    photo = load_image(photo_dir / "truck.jpg")
    predictor = Predictor(str(clip_models["detector"]), str(clip_models["segmenter"]), device="cpu",
                          adapter=str(out), box_threshold=0.2, text_threshold=0.2, max_detections=5)
    predictor.set_image(photo)
    found = predictor.segment("wheel", text_tokens=True)
    assert len(found) > 0 and found.mask.shape == (len(found), *photo.shape[:2])
    alone = predictor.segment("wheel", text_tokens="only")
    assert alone.mask.shape[1:] == photo.shape[:2]

    seg_out = tmp_path / "seg"
    assert main(["segment", str(photo_dir / "truck.jpg"), "wheel", "--out", str(seg_out), "--adapter", str(out),
                 "--text-tokens", *_model_args(clip_models)]) == 0
    detections = json.loads((seg_out / "truck.json").read_text())
    assert len(detections["detections"]) == len(found)


def test_cli_refuses_text_tokens_without_adapter(tmp_path, generated_images, clip_models, capsys):
    code = main(["segment", str(generated_images / "0.png"), "wheel", "--out", str(tmp_path), "--text-tokens",
                 *_model_args(clip_models)])
    assert code == 2 and "needs a trained text-prompt adapter" in capsys.readouterr().err
