"""Fixtures of the MCP tests: servers over tiny models or the fake predictor, driven by the SDK's own client.

(No ``__init__.py`` here: a test package named ``mcp`` would shadow the SDK.)
"""

from __future__ import annotations

import pytest

pytest.importorskip("mcp.server.mcpserver", reason='grounded mcp needs its extra: pip install "grounded[mcp]"')

from mcp_helpers import make_server  # noqa: E402


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
