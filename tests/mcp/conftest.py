"""Fixtures of the MCP tests: servers over tiny models or the fake predictor, driven by the SDK's own client.

(No ``__init__.py`` here: a test package named ``mcp`` would shadow the SDK.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mcp.server.mcpserver", reason='grounded mcp needs its extra: pip install "grounded[mcp]"')

import anyio  # noqa: E402
from mcp import Client  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "prompts"


def make_server(factory, roots, prompts=PROMPTS):
    """An MCP server whose teacher ``factory()`` builds (once, on first use), allowed ``roots``."""
    from grounded.mcp.server import Workspace, build_server
    from grounded.serve.engine import Engine

    return build_server(Workspace.create(Engine(factory), list(roots), prompts))


def with_client(server, body, **client_options):
    """Run ``await body(client)`` with the SDK's in-process client connected to ``server``; its result."""

    async def main():
        async with Client(server, **client_options) as client:
            return await body(client)

    return anyio.run(main)


async def wait_done(client, run: str, timeout: float = 120.0) -> dict:
    """Poll run_status until the run's job is no longer running; its structured status."""
    with anyio.fail_after(timeout):
        while True:
            status = (await client.call_tool("run_status", {"run": run})).structured_content
            if status["job"]["state"] != "running":
                return status
            await anyio.sleep(0.1)


def error_text(result) -> str:
    assert result.is_error, result.content
    (block,) = result.content
    return block.text


@pytest.fixture
def tiny_server(tiny_predictor, photo_path, tmp_path):
    """Tiny Grounding DINO + SAM (loaded once for the session); roots: tmp_path first (relative outputs land
    there), then the shared photo's folder (read only by the tests)."""
    return make_server(lambda: tiny_predictor, [tmp_path, photo_path.parent])


@pytest.fixture
def fake_server(tmp_path):
    """The fake predictor (0.15 s per image), tmp_path as the only root, with 8 images in tmp_path/images."""
    from grounded.testing.fake import FakePredictor, make_images

    make_images(tmp_path / "images", 8)
    return make_server(lambda: FakePredictor(delay=0.15), [tmp_path])
