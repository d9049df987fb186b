"""Helpers of the MCP tests (a module of its own: with several conftest.py files in the suite, `import conftest`
finds whichever loaded first)."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "prompts"


def make_server(factory, roots, prompts=PROMPTS):
    """An MCP server whose teacher ``factory()`` builds (once, on first use), allowed ``roots``."""
    from grounded.mcp.server import build_server
    from grounded.mcp.tools import Workspace
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
