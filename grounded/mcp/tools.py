"""What every MCP tool module shares: the :class:`Workspace` (the teacher, the allowed folders, known runs,
ontologies by name), :func:`add_tool` (a Python function -> a tool whose errors are the CLI's one-line
messages) and :func:`picture` (annotated PNG bytes). :mod:`grounded.mcp.server`, :mod:`grounded.mcp.runs` and
:mod:`grounded.mcp.students` register their tools through these.
"""

from __future__ import annotations

import base64
import functools
import inspect
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations

from grounded.errors import GroundedError, InputError
from grounded.mcp.jobs import Runs
from grounded.mcp.roots import Roots
from grounded.mcp.schemas import ToolOutput
from grounded.ontology import Ontology
from grounded.serve.engine import Engine

logger = logging.getLogger(__name__)

PICTURE_SIDE = 1024  # annotated pictures sent as image content are reduced to this long side (files are not)


@dataclass
class Workspace:
    """What every tool reads: the teacher, the allowed folders, known runs, ontologies by name."""

    engine: Engine
    roots: Roots
    prompts: dict[str, Path] = field(default_factory=dict)  # ontology name -> YAML file
    runs: Runs = field(default_factory=Runs)
    cache: dict[Any, Any] = field(default_factory=dict)  # loaded students, run views (by path)

    @classmethod
    def create(cls, engine: Engine, roots: list[str | Path], prompts_dir: str | Path | None = None) -> Workspace:
        prompts = {}
        if prompts_dir is not None and Path(prompts_dir).is_dir():
            prompts = {p.stem: p for p in sorted(Path(prompts_dir).iterdir())
                       if p.suffix in (".yaml", ".yml") and p.is_file()}
        return cls(engine, Roots(roots), prompts)

    def ontology(self, name_or_path: str) -> Ontology:
        """An ontology of the prompts folder by name, or a YAML file inside the roots."""
        if name_or_path in self.prompts:
            return Ontology.from_yaml(self.prompts[name_or_path])
        if not name_or_path.lower().endswith((".yaml", ".yml")):
            raise InputError(f"unknown ontology {name_or_path!r}; choose from {sorted(self.prompts)} or give a "
                             ".yaml file inside the allowed folders")
        return Ontology.from_yaml(self.roots.resolve(name_or_path, "ontology"))

    def prompt(self, prompt: str | None, ontology: str | None) -> Ontology:
        """The classes to find: a prompt (``"a wheel"``, ``"car . wheel ."``, ``"car, wheel"``) or an ontology."""
        if prompt and prompt.strip() and ontology:
            raise InputError("give a prompt or an ontology, not both")
        if ontology:
            return self.ontology(ontology)
        return Ontology.from_prompt(prompt if prompt is not None else "")

    def folder(self, run: str, what: str = "run") -> Path:
        """A run's folder from its id or its path (inside the roots)."""
        known = self.runs.folder(run)
        return known if known is not None else self.roots.resolve(run, what)


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _reply(output: ToolOutput) -> CallToolResult:
    data = output.model_dump(mode="json", by_alias=True)
    text = output._text if output._text is not None else json.dumps(data, indent=1)
    blocks: list[Any] = [TextContent(type="text", text=text)]
    blocks += [ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
               for png in output._images]
    return CallToolResult(content=blocks, structured_content=data)


def add_tool(server: MCPServer, fn: Callable[..., Any], *, title: str, read_only: bool = False) -> None:
    """Register ``fn`` (returning a :class:`ToolOutput`; its docstring and ``Annotated`` parameters document
    it): grounded's errors become tool errors with their one-line message; a sync ``fn`` runs on a thread."""
    is_async = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            if is_async:
                output = await fn(*args, **kwargs)
            else:
                output = await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        except GroundedError as exc:
            logger.info("tool %s refused: %s", fn.__name__, exc)
            return _error(str(exc))
        except Exception as exc:  # noqa: BLE001  (a tool error, never a dropped connection)
            logger.exception("tool %s failed", fn.__name__)
            return _error(f"internal error ({type(exc).__name__}: {exc}); see the server's log")
        return _reply(output)

    server.add_tool(call, name=fn.__name__, title=title, description=inspect.getdoc(fn),
                    annotations=ToolAnnotations(title=title, read_only_hint=read_only, open_world_hint=False))


def picture(image: Any, detections: Any, labels: bool = True, side: int | None = PICTURE_SIDE) -> bytes:
    """The annotated PNG (:func:`grounded.io.annotate.annotate`), reduced to ``side`` on its long side."""
    from grounded.io.annotate import annotate

    scene = annotate(image, detections, labels=labels)
    if side is not None and max(scene.size) > side:
        scene.thumbnail((side, side))
    buffer = io.BytesIO()
    scene.save(buffer, format="PNG")
    return buffer.getvalue()


