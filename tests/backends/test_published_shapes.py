"""Every checkpoint the README names, as a tiny double shaped like the published one (same config class and
model_type, same processor files: grounded/testing/tiny_published.py), loaded through the registry in each role
its model_type serves, then one segment call. The video-typed ones (sam2_video, edgetam_video, sam3_video) load
through transformers' image classes: every image weight must come from the checkpoint, quietly."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from grounded.models import registry
from grounded.testing.tiny_published import PUBLISHED, Published

README = Path(__file__).resolve().parents[2] / "README.md"
SHAPES = sorted(set(PUBLISHED.values()), key=lambda spec: spec.model_type)  # one tiny double per distinct shape
REQUIRES = {"omdet-turbo": ("torchvision",), "sam2_video": ("torchvision",), "sam3_video": ("torchvision",),
            "edgetam_video": ("torchvision", "timm")}
VIDEO = {"sam2_video": "Sam2Model", "edgetam_video": "EdgeTamModel", "sam3_video": "Sam3Model"}


@pytest.fixture(scope="module", params=SHAPES, ids=lambda spec: spec.model_type)
def published(request, tmp_path_factory, bert_vocab, clip_vocab) -> tuple[Published, str]:
    """(what is published, folder of its tiny double)."""
    from grounded.testing.tiny_published import build_published

    spec: Published = request.param
    for module in REQUIRES.get(spec.model_type, ()):
        pytest.importorskip(module, reason=f"{spec.model_type} needs {module} (the backends extra)")
    if spec.model_type == "sam3_video" and clip_vocab is None:
        pytest.skip("SAM 3 needs CLIP's real vocabulary (../shared/data/vocab/clip)")
    name = next(n for n, s in PUBLISHED.items() if s == spec)
    vocab = {"bert": bert_vocab, "clip": clip_vocab}.get(spec.vocab)
    return spec, str(build_published(name, tmp_path_factory.mktemp(spec.model_type), vocab))


@pytest.fixture
def transformers_warnings():
    """Records of level WARNING and above that transformers' loggers emit during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    yield records
    library.removeHandler(handler)


def test_the_double_has_the_published_files(published):
    spec, folder = published
    files = {p.name for p in Path(folder).iterdir()}
    assert json.loads((Path(folder) / "config.json").read_text())["model_type"] == spec.model_type
    image = json.loads((Path(folder) / "preprocessor_config.json").read_text())
    assert (image["image_processor_type"], image["processor_class"]) == (spec.image_processor_type, spec.processor_class)
    video = spec.processor_class.endswith("VideoProcessor")
    assert ("video_preprocessor_config.json" in files) == video and ("processor_config.json" in files) == video
    assert ("tokenizer.json" in files) == (spec.vocab is not None)


def test_each_role_loads_through_the_registry_and_segments(published, tiny_model_dirs, photo, transformers_warnings):
    """One segment call per role with a backend; the other model of a detector + segmenter pair is the default's
    tiny double. No transformers warning on the way (the video checkpoints' model_type warning is silenced)."""
    from grounded import Predictor

    spec, folder = published
    image = np.ascontiguousarray(photo[::4, ::4])  # a quarter of the photo: OWLv2's torchvision resize is slow
    roles = {role: target for role, target in registry.BACKENDS[spec.model_type].items()
             if target and role in registry.FLAGS}  # the image roles (the tracker: tests/video)
    assert roles, spec.model_type
    if "tracker" in registry.BACKENDS[spec.model_type]:  # a video checkpoint: its tracker loads with the same flag
        from grounded.video.backends import load_video_backend

        tracker = load_video_backend(folder, registry.image_role(spec.model_type), torch.device("cpu"), torch.float32)
        assert type(tracker).__name__ == registry.BACKENDS[spec.model_type]["tracker"].split(":")[1]
    for role, target in roles.items():
        pair = {"detector": str(tiny_model_dirs[0]), "segmenter": str(tiny_model_dirs[1])}
        predictor = Predictor(**({"model": folder} if role == "model" else {**pair, role: folder}), box_threshold=0.0)
        backends = dict(predictor.backends())
        assert type(backends[role]).__name__ == target.split(":")[1]
        token_scores = all("text_threshold" not in b.refused_options for b in backends.values())
        predictor.set_image(image)
        found = predictor.segment("a wheel . a truck", **({"text_threshold": 0.0} if token_scores else {}))
        assert len(found) > 0 and found.mask.shape[1:] == image.shape[:2] and found.mask.dtype == bool
    noise = [r.getMessage()[:200] for r in transformers_warnings if "model of type" in r.getMessage()]
    assert noise == []


def test_the_video_checkpoints_image_model_comes_whole_from_the_checkpoint(published):
    """The image class over a video checkpoint: every weight equals the video model's (sam3_video: its
    ``detector_model.*``), and the vision encoder's features equal the video model's on the same input."""
    from transformers import AutoModel

    spec, folder = published
    if spec.model_type not in VIDEO:
        pytest.skip("an image checkpoint: its class is its own")
    role = registry.image_role(spec.model_type)
    backend = registry.load_backend(folder, role, torch.device("cpu"), torch.float32)
    image, video = backend.model, AutoModel.from_pretrained(folder).eval()
    assert type(image).__name__ == VIDEO[spec.model_type] and type(video).__name__.endswith("VideoModel")
    weights, video_weights = image.state_dict(), video.state_dict()
    prefix = "detector_model." if spec.model_type == "sam3_video" else ""
    differing = [k for k in weights if not torch.equal(weights[k], video_weights.get(prefix + k, torch.empty(0)))]
    assert differing == [] and len(weights) > 100
    encoder = video.detector_model.vision_encoder if prefix else video.vision_encoder
    size = backend.processor.image_processor.size["height"]
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = image.vision_encoder(pixels), encoder(pixels)
    for a, b in zip(ours.fpn_hidden_states, theirs.fpn_hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _readme_rows() -> list[tuple[str, list[str], str]]:
    """(role flag, Hugging Face names, published model_type) of each row of the README's models table.
    A name written ``-large`` after ``facebook/sam-vit-base`` is ``facebook/sam-vit-large``."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| role (flag) | family |"):].split("\n\n", 1)[0].splitlines()[2:]
    rows, role = [], ""
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        role = re.search(r"--\w+", cells[0])[0] if "--" in cells[0] else role
        names: list[str] = []
        for token in re.findall(r"`([^`]+)`", cells[2]):
            if token.startswith("-"):
                token = names[0].rsplit("-", 1)[0] + token
            names.append(token)
        rows.append((role, names, re.findall(r"`([^`]+)`", cells[3])[0]))
    return rows


def test_the_readme_table_is_the_published_list_and_the_registry_serves_it():
    flags = {flag: role for role, flag in registry.FLAGS.items()}
    seen = set()
    for flag, names, model_type in _readme_rows():
        assert registry.BACKENDS[model_type].get(flags[flag]), (flag, model_type)
        for name in names:
            assert PUBLISHED[name].model_type == model_type, name
            seen.add(name)
    assert seen == set(PUBLISHED)


def test_every_type_of_the_registry_is_in_the_readme_table():
    """The registry's table is the one list of backends; the README's models table names each of its types."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| role (flag) | family |"):].split("\n\n", 1)[0].splitlines()[2:]
    written = {t for line in table for t in re.findall(r"`([^`]+)`", line.split("|")[4])}
    assert {t for t, roles in registry.BACKENDS.items() if any(roles.values())} <= written


def test_each_backend_class_implements_its_role_and_its_types_are_its_rows():
    from grounded.models.interfaces import ConceptSegmenter, Detector, Segmenter

    interfaces = {"detector": Detector, "segmenter": Segmenter, "model": ConceptSegmenter}
    served: dict[tuple[str, str], set[str]] = {}
    for model_type, roles in registry.BACKENDS.items():
        for role, target in roles.items():
            if target and role in interfaces:  # the trackers: tests/test_registry.py, tests/video
                served.setdefault((role, target), set()).add(model_type)
    for (role, target), types in served.items():
        cls = registry.backend_class(next(iter(types)), role)
        assert issubclass(cls, interfaces[role]) and cls.role == role, target
        assert set(registry.types_served_by(cls)) == types, target  # the model types, declared once: the rows


@pytest.mark.parametrize("model_type, role, message", [
    ("sam3_video", "segmenter", r"'sam3_video' is a concept segmenter .* and a video tracker .*: pass it with --model"),
    ("sam2_video", "model", r"'sam2_video' is a promptable segmenter .* pass it with --segmenter"),
    ("sam2", "tracker", r"'sam2' is a promptable segmenter .* pass it with --segmenter"),
])
def test_roles_a_video_type_serves_elsewhere_are_named(tmp_path, model_type, role, message):
    from grounded.errors import ModelLoadError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    with pytest.raises(ModelLoadError, match=message):
        registry.load_backend(str(tmp_path), role, torch.device("cpu"), torch.float32)


def test_only_the_known_warning_is_silenced(transformers_warnings):
    """The filter drops transformers' model_type warning for a pair the backend accepts, nothing else."""
    from grounded.models.loading import _quiet_known_subset

    config_logger = logging.getLogger("transformers.configuration_utils")
    text = ("You are using a model of type `{}` to instantiate a model of type `{}`. This may be expected if you "
            "are loading a checkpoint that shares a subset of the architecture")
    with _quiet_known_subset(("sam2", "sam2_video")):
        config_logger.warning(text.format("sam2_video", "sam2"))
        config_logger.warning(text.format("sam3_video", "sam2"))  # not a pair this backend accepts
        config_logger.warning("another warning")
    config_logger.warning(text.format("sam2_video", "sam2"))  # outside a grounded load
    assert [r.getMessage()[:50] for r in transformers_warnings] == [
        text.format("sam3_video", "sam2")[:50], "another warning", text.format("sam2_video", "sam2")[:50]]


CLI_FLAGS = {"sam2_video": "--segmenter", "edgetam_video": "--segmenter", "sam3_video": "--model"}


def test_cli_segments_the_photo_with_each_video_checkpoint(published, tiny_model_dirs, photo_path, tmp_path, capfd):
    """``grounded segment truck.jpg "a wheel" --segmenter <sam2_video / edgetam_video>`` (tiny Grounding DINO) and
    ``--model <sam3_video>``: a PNG + JSON pair, and no model_type warning on stderr."""
    from PIL import Image

    from grounded.cli import main

    spec, folder = published
    if spec.model_type not in CLI_FLAGS:
        pytest.skip("an image checkpoint: the CLI path is tested elsewhere")
    flag = CLI_FLAGS[spec.model_type]
    pair = ["--detector", str(tiny_model_dirs[0]), "--text-threshold", "0"] if flag == "--segmenter" else []
    out = tmp_path / "out"
    code = main(["segment", str(photo_path), "a wheel", flag, folder, *pair, "--box-threshold", "0", "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 0, err[-2000:]
    assert json.loads((out / f"{photo_path.stem}.json").read_text())["detections"]
    assert np.asarray(Image.open(out / f"{photo_path.stem}.png")).shape[:2] == Image.open(photo_path).size[::-1]
    assert "model of type" not in err
