"""Each `grounded serve` flag reaches what it configures: the server's settings (grounded/serve/settings.py),
the application's limits and defaults (create_app) and the teacher the engine builds (every teacher flag).

The flags are generated from ServeConfig and the teacher's dataclasses; uvicorn is replaced by a recorder, so
nothing listens and no model loads.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from grounded.cli import main
from grounded.config import SegmentOptions
from grounded.serve.settings import ServeConfig

from .conftest import make_run

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

# flag, value, where it lands: ("uvicorn" | "app" | "limits" | "engine" | "defaults" | "teacher", key, expected)
TABLE = [
    ("--host", "0.0.0.0", "uvicorn", "host", "0.0.0.0"),  # with a token: see the row's extra below
    ("--port", "8123", "uvicorn", "port", 8123),
    ("--token", "secret", "app", "token", "secret"),
    ("--prompts", "{tmp}", "app", "prompts_dir", "{tmp}"),
    ("--max-upload-mb", "2", "limits", "max_upload_bytes", 2 * 2**20),
    ("--max-megapixels", "3", "limits", "max_pixels", 3_000_000),
    ("--max-queue", "5", "limits", "max_queue", 5),
    ("--max-points", "9", "limits", "max_points", 9),
    ("--encoding-cache-mb", "2", "engine", "cache_bytes", 2 * 2**20),
    ("--box-threshold", "0.5", "defaults", "box_threshold", 0.5),
    ("--text-threshold", "0.1", "defaults", "text_threshold", 0.1),
    ("--nms", "agnostic", "defaults", "nms", "agnostic"),
    ("--nms-on", "mask", "defaults", "nms_on", "mask"),
    ("--nms-iou", "0.7", "defaults", "nms_iou", 0.7),
    ("--multimask", None, "defaults", "multimask", True),
    ("--max-detections", "7", "defaults", "max_detections", 7),
    ("--mask-threshold", "0.2", "defaults", "mask_threshold", 0.2),
    ("--sam-box-batch", "8", "defaults", "sam_box_batch", 8),
    ("--detector", "some/detector", "teacher", "detector", "some/detector"),
    ("--segmenter", "some/segmenter", "teacher", "segmenter", "some/segmenter"),
    ("--device", "cpu", "teacher", "device", "cpu"),
    ("--offline", None, "teacher", "local_files_only", True),
    ("--preset", "fast", "teacher", "preset", "fast"),
    ("--threads", "2", "teacher", "threads", 2),
    ("--box-threshold", "0.5", "teacher", "box_threshold", 0.5),
]


@pytest.fixture
def served(monkeypatch):
    """Run `grounded serve ARGS` with uvicorn and create_app recorded; returns what each received."""
    import uvicorn

    import grounded.serve.app as app_module
    import grounded.serve.engine as engine_module

    seen: dict[str, dict] = {}
    real_create_app = app_module.create_app

    def create_app(engine, run=None, **kwargs):
        seen["app"] = {"engine": engine, "run": run, **kwargs}
        return real_create_app(engine, run, **kwargs)

    class Engine(engine_module.Engine):
        def __init__(self, factory, models, **kwargs):
            seen["engine"] = {"factory": factory, "models": models, **kwargs}
            super().__init__(factory, models, **kwargs)

    monkeypatch.setattr(app_module, "create_app", create_app)
    monkeypatch.setattr(engine_module, "Engine", Engine)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.setdefault("uvicorn", kwargs))

    def serve(*argv: str) -> dict[str, dict]:
        seen.clear()
        assert main(["serve", *argv]) == 0
        return seen

    return serve


def _teacher_kwargs(engine_seen: dict, monkeypatch) -> dict:
    import grounded.pipeline.predictor as predictor_module

    built = {}
    monkeypatch.setattr(predictor_module, "Predictor", lambda **kwargs: built.update(kwargs) or "teacher")
    assert engine_seen["factory"]() == "teacher"
    return built


@pytest.mark.parametrize("flag, value, where, key, expected", TABLE, ids=lambda v: v if isinstance(v, str) else None)
def test_each_serve_flag_reaches_what_it_configures(served, monkeypatch, tmp_path, flag, value, where, key, expected):
    value = value.format(tmp=tmp_path) if isinstance(value, str) else value
    expected = Path(expected.format(tmp=tmp_path)) if expected == "{tmp}" else expected
    extra = ["--token", "t"] if flag == "--host" else []
    seen = served(*extra, flag, *([] if value is None else [value]))
    if where == "uvicorn":
        got = seen["uvicorn"][key]
    elif where == "app":
        got = seen["app"][key]
    elif where == "limits":
        got = getattr(seen["app"]["limits"], key)
    elif where == "engine":
        got = seen["engine"][key]
    elif where == "defaults":
        got = getattr(seen["app"]["defaults"], key)
    else:
        got = _teacher_kwargs(seen["engine"], monkeypatch)[key]
    assert got == expected


def test_run_reaches_the_review_and_every_field_has_a_flag(served, tmp_path):
    run = make_run(tmp_path)
    seen = served("--run", str(run))
    assert seen["app"]["run"] is not None and seen["app"]["run"].info()["images_root"]
    flags = {row[0] for row in TABLE} | {"--run"}
    assert {"--" + f.name.replace("_", "-") for f in fields(ServeConfig)} <= flags
    assert {f.name for f in fields(SegmentOptions) if not f.name.startswith("class_")} - {"text_tokens", "verify"} \
        <= {row[3] for row in TABLE if row[2] == "defaults"}


def test_defaults_and_bad_limits(served):
    seen = served()
    assert seen["uvicorn"] == {"host": "127.0.0.1", "port": 8000, "log_level": "warning"}
    assert seen["app"]["defaults"] == SegmentOptions() and seen["app"]["token"] is None
    with pytest.raises(Exception, match="must be positive"):
        ServeConfig(max_queue=0)
    assert main(["serve", "--max-queue", "0"]) == 2
