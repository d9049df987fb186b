"""The MCP server through the SDK's own in-process client, with tiny models: tools listed with their schemas,
``segment`` on a shared photo (the JSON ``grounded segment`` writes, plus the picture), a small ``label`` run
polled to completion, paths outside the roots refused, and a bad prompt answered with the CLI's message."""

from __future__ import annotations

import base64
import io
import json

import pytest
from mcp_helpers import error_text, make_server, wait_done, with_client
from PIL import Image

from grounded.cli import main

TOOLS = {"segment", "label", "run_status", "review_queue", "export", "train", "evaluate", "predict", "models",
         "cancel"}


def test_tools_and_resources_are_listed_with_documented_schemas(tiny_server):
    async def body(client):
        return (await client.list_tools(), await client.list_resources(), await client.list_resource_templates())

    tools, resources, templates = with_client(tiny_server, body)
    assert {t.name for t in tools.tools} == TOOLS
    for tool in tools.tools:
        assert tool.description and tool.output_schema, tool.name
        for name, spec in tool.input_schema["properties"].items():
            assert spec.get("description") or name in {"seed", "nms_iou", "max_detections", "epochs", "max_steps",
                                                       "batch_size"}, (tool.name, name)
    uris = {str(r.uri) for r in resources.resources}
    assert {"grounded://runs", "grounded://ontologies/car_parts", "grounded://ontologies/coco"} <= uris
    assert {t.uri_template for t in templates.resource_templates} == {"grounded://runs/{run}/summary",
                                                                      "grounded://runs/{run}/preview"}


def test_segment_returns_the_json_of_grounded_segment_and_the_picture(tiny_server, tiny_model_dirs, photo_path,
                                                                     photo, tmp_path):
    args = {"image": str(photo_path), "prompt": "a wheel", "box_threshold": 0.2, "text_threshold": 0.0}

    async def body(client):
        return await client.call_tool("segment", args), await client.call_tool("segment", args)

    first, again = with_client(tiny_server, body)
    assert not first.is_error, first.content
    data = first.structured_content
    assert (data["height"], data["width"]) == photo.shape[:2]
    assert data["detections"] and data["reused_image_encoding"] is False and again.structured_content[
        "reused_image_encoding"] is True
    detector, segmenter = tiny_model_dirs
    out = tmp_path / "cli"
    assert main(["segment", str(photo_path), "a wheel", "--out", str(out), "--box-threshold", "0.2",
                 "--text-threshold", "0", "--detector", str(detector), "--segmenter", str(segmenter)]) == 0
    written = json.loads((out / f"{photo_path.stem}.json").read_text())
    mine = {k: data[k] for k in written if k != "image"}
    assert mine == {k: v for k, v in written.items() if k != "image"}  # the same schema, the same detections
    text, picture = first.content
    assert "mask" not in json.loads(text.text.split("\n(masks")[0])["detections"][0]  # masks stay structured
    with Image.open(io.BytesIO(base64.b64decode(picture.data))) as im:
        assert picture.mime_type == "image/png" and max(im.size) <= 1024


def test_bad_prompt_is_a_tool_error_with_the_cli_line(tiny_server, tiny_model_dirs, photo_path, tmp_path, capsys):
    result = with_client(tiny_server, lambda c: c.call_tool("segment", {"image": str(photo_path), "prompt": "  "}))
    text = error_text(result)
    detector, segmenter = tiny_model_dirs
    assert main(["segment", str(photo_path), "  ", "--out", str(tmp_path / "o"), "--detector", str(detector),
                 "--segmenter", str(segmenter)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"grounded: error: {text}"
    assert text.startswith("empty prompt") and "\n" not in text


def test_paths_outside_the_roots_are_refused(tiny_server, photo_path, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}_outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(photo_path.read_bytes())
    (tmp_path / "link.png").symlink_to(outside / "x.png")  # inside the root, leading out of it
    calls = [("segment", {"image": str(outside / "x.png"), "prompt": "a wheel"}),
             ("segment", {"image": "../" + outside.name + "/x.png", "prompt": "a wheel"}),
             ("segment", {"image": str(tmp_path / "link.png"), "prompt": "a wheel"}),
             ("label", {"images": str(tmp_path), "out": str(outside / "run"), "classes": "car"}),
             ("run_status", {"run": "/etc"})]

    async def body(client):
        return [await client.call_tool(name, args) for name, args in calls]

    for (name, args), result in zip(calls, with_client(tiny_server, body), strict=True):
        assert "is outside the folders this server may use" in error_text(result), (name, args)
    assert not (outside / "run").exists()


def test_label_run_polled_to_completion_then_reviewed_and_exported(tiny_server, tmp_path):
    from grounded.testing.fake import make_images

    make_images(tmp_path / "images", 3, size=(48, 64))

    async def body(client):
        started = await client.call_tool("label", {"images": "images", "out": "labelled", "classes": "car, wheel",
                                                   "formats": ["coco"], "preview": 2})
        assert not started.is_error, started.content
        run = started.structured_content["run"]
        status = await wait_done(client, run)
        queue = await client.call_tool("review_queue", {"run": run, "limit": 5})
        exported = await client.call_tool("export", {"run": run, "formats": ["voc"]})
        preview = await client.read_resource(f"grounded://runs/{run}/preview")
        return run, status, queue.structured_content, exported, preview

    run, status, queue, exported, preview = with_client(tiny_server, body)
    assert run == "labelled"
    assert status["job"]["state"] == "done" and status["job"]["done"] == status["job"]["total"] == 3
    assert status["counts"]["labelled"] == 3 and status["counts"]["missing"] == 0
    assert status["summary"]["labelled"] == 3 and (tmp_path / "labelled" / "coco" / "train.json").is_file()
    assert queue["thresholds_known"] is True  # the Predictor records its options in run.json
    doubts = [item["doubt"] for item in queue["items"]]
    assert doubts == sorted(doubts, reverse=True) and all(0 < d <= 1 for d in doubts)
    assert not exported.is_error and (tmp_path / "labelled" / "voc" / "Annotations").is_dir()
    assert preview.contents[0].mime_type == "image/png"


def test_models_reports_what_each_backend_honours(tiny_server):
    before, after = with_client(tiny_server, lambda c: _models_twice(c))
    if not before["loaded"]:  # the session's tiny predictor may already be loaded by an earlier test
        assert before["backends"] == []
    assert after["loaded"] and {b["role"] for b in after["backends"]} == {"detector", "segmenter"}
    for backend in after["backends"]:
        assert "box_threshold" in backend["honours"] and not set(backend["refuses"]) & set(backend["honours"])
    assert "car_parts" in after["ontologies"] and after["roots"]


async def _models_twice(client):
    return ((await client.call_tool("models", {})).structured_content,
            (await client.call_tool("models", {"load": True})).structured_content)


def test_a_root_that_is_not_a_folder_is_refused(tmp_path):
    from grounded.errors import InputError

    with pytest.raises(InputError, match="--root .* is not a folder"):
        make_server(lambda: None, [tmp_path / "absent"])
