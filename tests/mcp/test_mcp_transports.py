"""``grounded mcp`` as an agent's client starts it (stdio, a subprocess) and over streamable HTTP with the serve
command's token rule."""

from __future__ import annotations

import os
import sys

import pytest
from mcp_helpers import REPO, make_server, with_client

from grounded.cli import main


@pytest.mark.slow
def test_stdio_subprocess_lists_tools_and_segments(tiny_model_dirs, photo_path, tmp_path):
    from mcp import StdioServerParameters

    detector, segmenter = tiny_model_dirs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = StdioServerParameters(
        command=sys.executable, cwd=str(REPO), env=env,
        args=["-m", "grounded.cli", "mcp", "--root", str(tmp_path), "--root", str(photo_path.parent),
              "--detector", str(detector), "--segmenter", str(segmenter), "--box-threshold", "0.2",
              "--text-threshold", "0", "--threads", "1"])

    async def body(client):
        tools = await client.list_tools()
        found = await client.call_tool("segment", {"image": str(photo_path), "prompt": "a wheel", "show": False,
                                                   "out": "out"})
        refused = await client.call_tool("segment", {"image": "/etc/hostname", "prompt": "a wheel"})
        return tools, found, refused

    tools, found, refused = with_client(command, body)
    assert "segment" in {t.name for t in tools.tools}
    assert not found.is_error and found.structured_content["detections"], found.content
    assert (tmp_path / "out" / f"{photo_path.stem}.json").is_file()  # relative outputs: below the first root
    assert refused.is_error and "outside the folders" in refused.content[0].text


def test_http_needs_the_token_when_given_and_loopback_hosts(tmp_path):
    from starlette.testclient import TestClient

    from grounded.mcp.server import http_app

    server = make_server(lambda: None, [tmp_path])
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                             "clientInfo": {"name": "test", "version": "0"}}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    with TestClient(http_app(server, token="s3cret"), base_url="http://127.0.0.1:8765") as client:
        assert client.post("/mcp", json=initialize, headers=headers).status_code == 401
        wrong = client.post("/mcp", json=initialize, headers={**headers, "authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "token" in wrong.json()["error"]
        right = client.post("/mcp", json=initialize, headers={**headers, "authorization": "Bearer s3cret"})
        assert right.status_code == 200, right.text
    with TestClient(http_app(make_server(lambda: None, [tmp_path])), base_url="http://evil.example") as client:
        assert client.post("/mcp", json=initialize, headers=headers).status_code != 200  # DNS rebinding refused


def test_other_hosts_need_a_token_and_roots_must_exist(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GROUNDED_SERVE_TOKEN", raising=False)
    assert main(["mcp", "--root", str(tmp_path), "--transport", "http", "--host", "0.0.0.0"]) == 2
    assert "--host 0.0.0.0 would let other machines in: give --token" in capsys.readouterr().err
    assert main(["mcp", "--root", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip().endswith("is not a folder; name an existing folder")


def test_teacher_flags_reach_the_predictor_when_it_loads(tmp_path, monkeypatch):
    from mcp.server.mcpserver import MCPServer

    import grounded.pipeline.predictor as module
    from grounded.errors import ModelLoadError

    built, answers = [], []

    class Recorder:
        def __init__(self, **kwargs):
            built.append(kwargs)
            raise ModelLoadError("recorded, not loaded")

    def run_in_process(server, transport):  # instead of serving stdio: one client call, the models load
        answers.append(with_client(server, lambda c: c.call_tool("models", {"load": True})))

    monkeypatch.setattr(module, "Predictor", Recorder)
    monkeypatch.setattr(MCPServer, "run", run_in_process)
    assert main(["mcp", "--root", str(tmp_path), "--detector", "DET", "--segmenter", "SEG", "--offline",
                 "--box-threshold", "0.3", "--nms", "agnostic", "--threads", "2"]) == 0
    (kwargs,) = built
    assert {k: kwargs[k] for k in ("detector", "segmenter", "local_files_only", "box_threshold", "nms", "threads")} \
        == {"detector": "DET", "segmenter": "SEG", "local_files_only": True, "box_threshold": 0.3, "nms": "agnostic",
            "threads": 2}
    (answer,) = answers
    assert answer.is_error and answer.content[0].text == "recorded, not loaded"  # the load error, as the CLI says it
