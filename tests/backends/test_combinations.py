"""Every detector x segmenter pair, and the concept segmenter, end to end: `grounded segment` (CLI, with
``--preset fast``) and `grounded.label` (Python), with tiny random models saved to folders and loaded through the
registry. Every run must find something (thresholds at 0 where the backend takes them) and every detection is
checked; `--preset fast` resolves per backend, with bf16 autocast really on (the CPU flags are patched)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grounded.cli import main
from grounded.config import RESIZABLE_INPUT
from grounded.errors import InputError
from grounded.models import acceleration
from grounded.models.registry import backend_class, image_role, image_types

DETECTORS, SEGMENTERS, MODELS = (image_types(role) for role in ("detector", "segmenter", "model"))  # the registry's
SIZES = {"a.png": (96, 128), "sub/b.jpg": (120, 90)}  # (H, W)
CLASSES = ("car", "wheel")
MAX = 3


def loose(model_type: str) -> dict[str, float | int]:
    """Options that keep a few boxes from random weights: thresholds at 0 where the backend takes them."""
    refused = backend_class(model_type, image_role(model_type)).refused_options
    return {"box_threshold": 0.0, "max_detections": MAX, **({} if "text_threshold" in refused else {"text_threshold": 0.0})}


def flags(options: dict[str, float | int]) -> list[str]:
    return [token for name, value in options.items() for token in ("--" + name.replace("_", "-"), str(value))]


@pytest.fixture
def native_bf16(monkeypatch):
    """Make autocast="auto" (the fast preset's) pick bf16 on this CPU, as on one with AVX-512 BF16 / AMX."""
    monkeypatch.setattr(acceleration, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, tiny_model_dirs, bert_vocab, clip_vocab) -> dict[str, str]:
    """model_type -> a tiny checkpoint folder, for every backend of the registry."""
    pytest.importorskip("torchvision", reason="SAM 2, EdgeTAM, OmDet-Turbo and SAM 3 need the backends extra")
    pytest.importorskip("timm", reason="EdgeTAM needs the backends extra")
    from grounded.testing import tiny_detectors, tiny_segmenters

    root = tmp_path_factory.mktemp("all_backends")
    vocab = clip_vocab or tiny_detectors.write_clip_vocab(root / "clip_vocab")
    detector, segmenter = tiny_model_dirs
    dirs = {
        "grounding-dino": str(detector),
        "sam": str(segmenter),
        "mm-grounding-dino": str(tiny_detectors.build_tiny_mm_grounding_dino(root / "mm_gdino", bert_vocab)),
        "owlv2": str(tiny_detectors.build_tiny_owlv2(root / "owlv2", clip_vocab)),
        "omdet-turbo": str(tiny_detectors.build_tiny_omdet_turbo(root / "omdet", clip_vocab)),
        "sam_hq": str(tiny_segmenters.build_tiny_sam_hq(root / "sam_hq")),
        "sam2": str(tiny_segmenters.build_tiny_sam2(root / "sam2")),
        "edgetam": str(tiny_segmenters.build_tiny_edgetam(root / "edgetam")),
        "sam3_tracker": str(tiny_segmenters.build_tiny_sam3_tracker(root / "sam3_tracker")),
        "sam3": str(tiny_segmenters.build_tiny_sam3(root / "sam3", vocab)),
    }
    assert set(dirs) == {*DETECTORS, *SEGMENTERS, *MODELS}  # every image backend of the registry, and no other
    return dirs


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("combo_images")
    rng = np.random.default_rng(3)
    for name, hw in SIZES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _check_detections(result: dict, hw: tuple[int, int]) -> None:
    """A detections JSON (segment's file or a label record): 1..MAX detections, each complete and in the image."""
    assert "error" not in result, result
    assert (result["height"], result["width"]) == hw
    assert 1 <= len(result["detections"]) <= MAX, result["detections"]
    for det in result["detections"]:
        x0, y0, x1, y1 = det["bbox_xyxy"]
        assert 0 <= x0 <= x1 <= hw[1] and 0 <= y0 <= y1 <= hw[0]
        assert det["class_name"] == CLASSES[det["class_id"]] and det["phrase"] == det["class_name"]
        assert 0.0 <= det["confidence"] <= 1.0 and det["mask"]["size"] == list(hw)
        assert 0 <= det["area"] <= hw[0] * hw[1]


def _check_segment_output(out: Path) -> None:
    assert (out / "a.png").is_file()
    _check_detections(json.loads((out / "a.json").read_text()), SIZES["a.png"])


def _check_label_run(out: Path) -> None:
    from grounded.label.records import read_record

    total = 0
    for rel, hw in SIZES.items():
        record = read_record(out, rel)
        assert record is not None
        _check_detections(record, hw)
        total += sum(d["area"] > 0 for d in record["detections"])  # COCO leaves empty masks out (counted apart)
    coco = [json.loads(p.read_text()) for p in (out / "coco").glob("*.json")]
    assert sum(len(c["annotations"]) for c in coco) == total  # empty masks have no COCO form: left out


@pytest.mark.parametrize("segmenter", SEGMENTERS)
@pytest.mark.parametrize("detector", DETECTORS)
def test_pair_through_cli_segment_and_label(model_dirs, images, tmp_path, detector, segmenter, native_bf16):
    from grounded import Predictor, label

    out = tmp_path / "segment"
    code = main(["segment", str(images / "a.png"), "car . wheel .", "--out", str(out), "--offline", "--preset", "fast",
                 "--detector", model_dirs[detector], "--segmenter", model_dirs[segmenter], *flags(loose(detector))])
    assert code == 0
    _check_segment_output(out)

    predictor = Predictor(model_dirs[detector], model_dirs[segmenter], local_files_only=True, **loose(detector))
    assert [role for role, _ in predictor.backends()] == ["detector", "segmenter"]
    label(images, list(CLASSES), tmp_path / "run", predictor=predictor, progress=False, preview=0)
    _check_label_run(tmp_path / "run")


def test_concept_segmenter_through_cli_segment_and_label(model_dirs, images, tmp_path, native_bf16):
    out = tmp_path / "segment"
    options = flags(loose("sam3"))
    assert main(["segment", str(images / "a.png"), "car . wheel .", "--out", str(out), "--offline",
                 "--model", model_dirs["sam3"], "--preset", "fast", *options]) == 0
    _check_segment_output(out)
    assert main(["label", str(images), "--classes", ", ".join(CLASSES), "--out", str(tmp_path / "run"), "--offline",
                 "--model", model_dirs["sam3"], "--preview", "0",
                 "--no-progress", *options]) == 0
    _check_label_run(tmp_path / "run")


def _models(model_dirs: dict[str, str], model_type: str) -> dict[str, str]:
    """Predictor keywords loading ``model_type`` in its role, beside the default pair's other half."""
    role = image_role(model_type)
    if role == "model":
        return {"model": model_dirs[model_type]}
    pair = {"detector": model_dirs["grounding-dino"], "segmenter": model_dirs["sam"]}
    return {**pair, role: model_dirs[model_type]}


@pytest.mark.parametrize("model_type", [*DETECTORS, *SEGMENTERS, *MODELS])
def test_fast_preset_is_the_fast_settings_each_backend_has(model_dirs, model_type, native_bf16):
    from transformers import AutoProcessor

    from grounded import Predictor

    models = _models(model_dirs, model_type)
    fast = Predictor(**models, preset="fast", local_files_only=True)
    backend = next(b for _, b in fast.backends() if b.name == model_dirs[model_type])
    assert all(b.autocast == torch.bfloat16 for _, b in fast.backends())  # autocast="auto": every backend
    size = backend.processor.image_processor.size
    if model_type in RESIZABLE_INPUT:
        assert size["shortest_edge"] == 512
    else:  # the checkpoint's own input size, and --detector-size itself is still refused where nothing takes it
        assert size == AutoProcessor.from_pretrained(model_dirs[model_type]).image_processor.size
        if image_role(model_type) != "segmenter":
            with pytest.raises(InputError, match="detector_size .* not supported"):
                Predictor(**models, detector_size=512, local_files_only=True)


# batch invariance: an image's result never depends on the other images of its call (grounded/models/batching.py)
ROLES = {kind: image_role(kind) for kind in (*DETECTORS, *SEGMENTERS, *MODELS)}
MIXED = [(60, 96), (88, 56), (60, 96), (150, 110)]  # two of one size (one batch), two others


def _predictor(model_dirs, kind):
    """A Predictor with ``kind`` in its role: a detector with SAM, a segmenter with Grounding DINO, or SAM 3."""
    from grounded import Predictor

    options = dict(local_files_only=True, box_threshold=0.0, max_detections=5)
    if ROLES[kind] == "model":
        return Predictor(model=model_dirs[kind], **options)
    if kind not in ("owlv2", "omdet-turbo"):  # Grounding DINO's family: a per-token score to pass too
        options["text_threshold"] = 0.0
    pair = {"detector": model_dirs["grounding-dino"], "segmenter": model_dirs["sam"], ROLES[kind]: model_dirs[kind]}
    return Predictor(**pair, **options)


@pytest.mark.parametrize("kind", list(ROLES))
def test_input_size_is_what_the_processor_gives_the_model(model_dirs, kind):
    backend = dict(_predictor(model_dirs, kind).backends())[ROLES[kind]]
    for hw in [(60, 96), (88, 56), (301, 300), (12, 500)]:
        size = backend.input_size(hw)
        out = backend.processor.image_processor(images=[np.zeros((*hw, 3), np.uint8)], return_tensors="pt")
        assert tuple(out["pixel_values"].shape[-2:]) == size.padded
        if "pixel_mask" in out:  # Grounding DINO's family: the real pixels of the padded input
            mask = out["pixel_mask"][0].bool()
            assert (int(mask.any(1).sum()), int(mask.any(0).sum())) == size.resized
        if "reshaped_input_sizes" in out:  # SAM's family: the resized image inside its padded square
            assert tuple(out["reshaped_input_sizes"][0].tolist()) == size.resized


@pytest.mark.parametrize("kind", list(ROLES))
def test_batch_of_mixed_sizes_equals_each_image_alone(model_dirs, kind):
    predictor = _predictor(model_dirs, kind)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in MIXED]
    together = predictor.segment_batch(images, "car, wheel, dog")
    assert sum(map(len, together)) > 0, "nothing found: the comparison would be empty"
    for image, ours in zip(images, together, strict=True):
        alone = predictor.segment_batch([image], "car, wheel, dog")[0]
        for a, b in [(ours.xyxy, alone.xyxy), (ours.confidence, alone.confidence), (ours.class_id, alone.class_id),
                     (ours.mask, alone.mask), (ours.data["mask_score"], alone.data["mask_score"]),
                     (ours.data["phrase"], alone.data["phrase"])]:
            np.testing.assert_array_equal(a, b)  # bit for bit, not within a tolerance


@pytest.mark.parametrize("hw", [(3000, 4000), (2000, 6000), (4000, 1000), (90, 120)])
def test_model_side_is_the_least_every_model_needs(model_dirs, hw):
    predictor = _predictor(model_dirs, "owlv2")  # OWLv2 (a 64 px square) + SAM (128 px long side)

    def fits(long_side: int) -> bool:  # reduced to it, the image is no smaller than any model resizes it to
        reduced = np.round(np.array(hw) * long_side / max(hw))
        return all((reduced >= backend.input_size(hw).resized).all() for _, backend in predictor.backends())

    side = predictor.model_side(hw)
    if hw == (90, 120):  # the models enlarge it: nothing to reduce
        assert side == 120 and not fits(side)
    else:  # the least long side that fits, or one pixel more (a ceiling, not the decoder's rounding)
        assert side < max(hw) and fits(side) and not fits(side - 2)
