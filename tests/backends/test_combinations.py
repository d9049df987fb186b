"""Every detector x segmenter pair, and the concept segmenter, end to end: `grounded segment` (CLI) and
`grounded.label` (Python), with tiny random models saved to folders and loaded through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded.cli import main

DETECTORS = ("grounding-dino", "mm-grounding-dino", "owlv2", "omdet-turbo")
SEGMENTERS = ("sam", "sam_hq", "sam2", "edgetam")
THRESHOLDS = ["--box-threshold", "0.0", "--max-detections", "3"]  # random weights: keep a few boxes


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, tiny_model_dirs, bert_vocab, clip_vocab) -> dict[str, str]:
    """model_type -> a tiny checkpoint folder, for every backend of the registry."""
    pytest.importorskip("torchvision", reason="SAM 2, EdgeTAM, OmDet-Turbo and SAM 3 need the backends extra")
    pytest.importorskip("timm", reason="EdgeTAM needs the backends extra")
    from grounded.testing import tiny_detectors, tiny_segmenters

    root = tmp_path_factory.mktemp("all_backends")
    vocab = clip_vocab or tiny_detectors.write_clip_vocab(root / "clip_vocab")
    detector, segmenter = tiny_model_dirs
    return {
        "grounding-dino": str(detector),
        "sam": str(segmenter),
        "mm-grounding-dino": str(tiny_detectors.build_tiny_mm_grounding_dino(root / "mm_gdino", bert_vocab)),
        "owlv2": str(tiny_detectors.build_tiny_owlv2(root / "owlv2", clip_vocab)),
        "omdet-turbo": str(tiny_detectors.build_tiny_omdet_turbo(root / "omdet", clip_vocab)),
        "sam_hq": str(tiny_segmenters.build_tiny_sam_hq(root / "sam_hq")),
        "sam2": str(tiny_segmenters.build_tiny_sam2(root / "sam2")),
        "edgetam": str(tiny_segmenters.build_tiny_edgetam(root / "edgetam")),
        "sam3": str(tiny_segmenters.build_tiny_sam3(root / "sam3", vocab)),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("combo_images")
    rng = np.random.default_rng(3)
    for name, hw in {"a.png": (96, 128), "sub/b.jpg": (120, 90)}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _check_segment_output(out: Path, hw: tuple[int, int]) -> None:
    assert (out / "a.png").is_file()
    result = json.loads((out / "a.json").read_text())
    assert (result["height"], result["width"]) == hw
    for det in result["detections"]:
        assert det["mask"]["size"] == list(hw) and det["class_name"] in ("car", "wheel")


def _check_label_run(out: Path, images: Path) -> None:
    from grounded.label.records import read_record

    for rel, hw in {"a.png": (96, 128), "sub/b.jpg": (120, 90)}.items():
        record = read_record(out, rel)
        assert record is not None and "error" not in record, record
        assert (record["height"], record["width"]) == hw
    assert (out / "coco" / "train.json").is_file() or (out / "coco" / "val.json").is_file()


@pytest.mark.parametrize("segmenter", SEGMENTERS)
@pytest.mark.parametrize("detector", DETECTORS)
def test_pair_through_cli_segment_and_label(model_dirs, images, tmp_path, detector, segmenter):
    from grounded import Predictor, label

    out = tmp_path / "segment"
    code = main(["segment", str(images / "a.png"), "car . wheel .", "--out", str(out), "--offline",
                 "--detector", model_dirs[detector], "--segmenter", model_dirs[segmenter], *THRESHOLDS])
    assert code == 0
    _check_segment_output(out, (96, 128))

    predictor = Predictor(model_dirs[detector], model_dirs[segmenter], local_files_only=True,
                          box_threshold=0.0, max_detections=3)
    assert [role for role, _ in predictor.backends()] == ["detector", "segmenter"]
    label(images, ["car", "wheel"], tmp_path / "run", predictor=predictor, progress=False, preview=0)
    _check_label_run(tmp_path / "run", images)


def test_concept_segmenter_through_cli_segment_and_label(model_dirs, images, tmp_path):
    out = tmp_path / "segment"
    assert main(["segment", str(images / "a.png"), "car . wheel .", "--out", str(out), "--offline",
                 "--model", model_dirs["sam3"], *THRESHOLDS]) == 0
    _check_segment_output(out, (96, 128))
    assert main(["label", str(images), "--classes", "car, wheel", "--out", str(tmp_path / "run"), "--offline",
                 "--model", model_dirs["sam3"], "--preview", "0", "--no-progress", *THRESHOLDS]) == 0
    _check_label_run(tmp_path / "run", images)
