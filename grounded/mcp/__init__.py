"""``grounded mcp``: a local, offline Model Context Protocol server over grounded's Python API.

::

    pip install "grounded[mcp]"
    grounded mcp --root ~/photos --root ~/datasets            # stdio: what an agent's client launches
    grounded mcp --root ~/photos --transport http --port 8765  # streamable HTTP on 127.0.0.1

Built on the official ``mcp`` SDK (``MCPServer``). The tools call the same functions the command line calls
(``grounded.label``, ``export_run``, ``train_run``, ``evaluate_run``, ``StudentPredictor``), never HTTP to
ourselves:

- :mod:`grounded.mcp.server`: the server, ``segment``, ``models``, and the resources (runs, ontologies);
- :mod:`grounded.mcp.runs`: ``label``, ``run_status``, ``review_queue``, ``export``, ``cancel``;
- :mod:`grounded.mcp.students`: ``train``, ``evaluate``, ``predict``;
- :mod:`grounded.mcp.jobs`: background jobs (one per run at a time), progress and cancellation;
- :mod:`grounded.mcp.roots`: every path a client gives must lie inside the folders named with ``--root``.

The teacher (detector + segmenter, or a concept segmenter) is built once, on first use, and shared by every
tool behind one lock (:class:`grounded.serve.engine.Engine`).
"""

MCP_EXTRA = 'pip install "grounded[mcp]"'


def require_mcp_extra() -> None:
    """Raise InputError naming the extra when the official MCP SDK (``mcp`` >= 2.3) is missing."""
    import importlib.util

    from grounded.errors import InputError

    if importlib.util.find_spec("mcp") is None or importlib.util.find_spec("mcp.server.mcpserver") is None:
        raise InputError(f"grounded mcp needs the official MCP Python SDK (mcp >= 2.3): {MCP_EXTRA}")
