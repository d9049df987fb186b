"""The registry and the seam's refusals: unsupported model_type, wrong role, --model with --detector, missing
extra, options a backend cannot honour (tiny saved configs, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from grounded import Predictor
from grounded.cli import main
from grounded.errors import InputError, ModelLoadError
from grounded.models import registry
from grounded.models.backends.grounding_dino import GroundingDinoDetector
from grounded.models.backends.sam import SamSegmenter
from grounded.models.interfaces import Segmenter

CPU = torch.device("cpu")


def _config_only(folder, model_type: str):
    """A folder with a config.json of ``model_type`` alone: enough for the registry to decide."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return str(folder)


def test_every_table_entry_names_a_role_and_a_module_class():
    for model_type, roles in registry.BACKENDS.items():
        assert roles and set(roles) <= set(registry.ROLE_NAMES), model_type
        for role, target in roles.items():
            if target is None:  # a role of the checkpoint without a backend here (the video roles)
                assert role not in registry.INTERFACES, model_type
                continue
            module, _, cls = target.partition(":")
            if role == "tracker":  # the video backends' room (grounded/video/backends), given with the image flag
                assert module.startswith("grounded.video.backends.") and registry.image_role(model_type), model_type
                assert registry.backend_class(model_type, role).__name__ == cls, model_type
                continue
            assert role in registry.INTERFACES and module.startswith("grounded.models.") and cls, model_type
            assert registry.backend_class(model_type, role).role == role, model_type  # implements that interface


@pytest.mark.parametrize("model_type, role", [("bert", "detector"), ("no-such-model", "segmenter"),
                                              ("clip", "model")])
def test_unsupported_model_type_lists_the_supported_ones(tmp_path, model_type, role):
    folder = _config_only(tmp_path / model_type, model_type)
    with pytest.raises(ModelLoadError) as err:
        registry.load_backend(folder, role, CPU, torch.float32)
    message = str(err.value)
    assert f"{model_type!r} checkpoint, which grounded does not support" in message
    for supported in registry.supported_types(role):
        assert repr(supported) in message


@pytest.mark.parametrize("which, role, flag", [
    ("detector", "segmenter", "--detector"), ("segmenter", "detector", "--segmenter"),
    ("segmenter", "model", "--segmenter"), ("sam3", "detector", "--model"),
])
def test_wrong_role_names_the_flag_to_use(tiny_model_dirs, tmp_path, which, role, flag):
    folders = {"detector": str(tiny_model_dirs[0]), "segmenter": str(tiny_model_dirs[1]),
               "sam3": _config_only(tmp_path / "sam3", "sam3")}
    with pytest.raises(ModelLoadError, match=f"pass it with {flag} "):
        registry.load_backend(folders[which], role, CPU, torch.float32)


def test_checkpoint_without_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no model_type"):
        registry.load_backend(str(tmp_path), "detector", CPU, torch.float32)


def test_missing_extra_names_the_install_command(tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(GroundingDinoDetector, "requires", ("grounded_no_such_package",))
    with pytest.raises(ModelLoadError, match=r'pip install "grounded\[backends\]"'):
        registry.load_backend(str(tiny_model_dirs[0]), "detector", CPU, torch.float32)


def test_backend_module_that_imports_a_missing_extra_names_it(tiny_model_dirs, monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "grounding-dino", {"detector": "torchvision.no_such_module:X"})
    monkeypatch.setitem(__import__("sys").modules, "torchvision", None)  # as if not installed
    with pytest.raises(ModelLoadError, match=r"needs the backends extra: pip install \"grounded\[backends\]\""):
        registry.load_backend(str(tiny_model_dirs[0]), "detector", CPU, torch.float32)


@pytest.mark.parametrize("kwargs", [{"detector": "D"}, {"segmenter": "S"}, {"detector": "D", "segmenter": "S"}])
def test_model_excludes_detector_and_segmenter(kwargs):
    with pytest.raises(InputError, match="either model .--model. or detector/segmenter"):
        Predictor(model="facebook/sam3", **kwargs)


def test_cli_model_with_detector_is_one_clear_error(tiny_model_dirs, photo_path, tmp_path, capsys):
    code = main(["segment", str(photo_path), "a wheel", "--model", str(tiny_model_dirs[1]),
                 "--detector", str(tiny_model_dirs[0]), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "give either model (--model) or detector/segmenter" in capsys.readouterr().err.strip().splitlines()[-1]


def test_an_option_the_detector_cannot_honour_is_refused_naming_it(tiny_model_dirs, photo, monkeypatch):
    monkeypatch.setattr(GroundingDinoDetector, "refused_options", {"text_threshold": "it scores queries, not tokens"})
    det, seg = map(str, tiny_model_dirs)
    with pytest.raises(InputError, match=rf"text_threshold=0.1 is not supported by the detector '{det}' "
                                         r"\(GroundingDinoDetector\): it scores queries"):
        Predictor(det, seg, text_threshold=0.1)
    predictor = Predictor(det, seg)  # the default value is not an instruction: accepted
    predictor.set_image(photo)
    predictor.segment("wheel")
    with pytest.raises(InputError, match="text_threshold=0.5 is not supported"):
        predictor.segment("wheel", text_threshold=0.5)


def test_text_tokens_refused_by_a_segmenter_without_sparse_prompts(tiny_model_dirs, photo, monkeypatch):
    monkeypatch.setattr(SamSegmenter, "refused_options", Segmenter.refused_options)
    predictor = Predictor(*map(str, tiny_model_dirs))
    predictor.set_image(photo)
    for value in (True, "only"):
        with pytest.raises(InputError, match=r"text_tokens=.* is not supported by the segmenter .*SamSegmenter"):
            predictor.segment("wheel", text_tokens=value)


def test_describe_and_backends_name_each_role(tiny_predictor):
    roles = dict(tiny_predictor.backends())
    assert set(roles) == {"detector", "segmenter"}
    assert isinstance(roles["detector"], GroundingDinoDetector) and isinstance(roles["segmenter"], SamSegmenter)
    assert tiny_predictor.model is None and "model" not in tiny_predictor.describe()


@pytest.mark.parametrize("layout", ["saved here", "as published"])
def test_default_path_never_imports_torchvision_or_timm(tiny_model_dirs, tmp_path, layout):
    """grounded segment on Grounding DINO + SAM in a process where torchvision and timm cannot be imported; "as
    published": processor files naming the image processor types the hub's checkpoints name (torchvision
    classes in transformers 5, which must fall back to their PIL versions)."""
    import os
    import subprocess
    import sys

    folders = [str(folder) for folder in tiny_model_dirs]
    if layout == "as published":
        from grounded.testing.tiny_published import PUBLISHED, published_layout

        names = ("IDEA-Research/grounding-dino-tiny", "facebook/sam-vit-base")
        folders = [str(published_layout(shutil.copytree(folder, tmp_path / Path(folder).name),
                                        PUBLISHED[name].image_processor_type))
                   for name, folder in zip(names, folders, strict=True)]

    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    script = (
        "import sys\n"
        "for name in ('torchvision', 'timm'):\n"
        "    sys.modules[name] = None  # importing it raises; importlib.util.find_spec says it is not installed\n"
        "for name in ('torchvision', 'timm'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        sys.exit(3)\n"
        "from grounded.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(registry.__file__).rsplit("/grounded/", 1)[0]}
    proc = subprocess.run([sys.executable, "-c", script, "segment", str(image), "a wheel", "--out", str(out),
                           "--detector", folders[0], "--segmenter", folders[1],
                           "--box-threshold", "0", "--text-threshold", "0"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "img.png").is_file() and json.loads((out / "img.json").read_text())["detections"]
