"""Long work on threads: progress, cancellation, and the runs (output folders) this server knows by id.

A :class:`Job` runs ``work(progress)`` on its own thread. The work counts what it did on its
:class:`Progress` and calls :meth:`Progress.check` between steps (between labelling batches, training steps,
images); once the job is cancelled, ``check`` raises :class:`Cancelled`, a ``BaseException`` so that no
per-image fault boundary (``except Exception``) swallows it, and the work stops where it is: finished records
and checkpoints stay on disk and the same call resumes.

:func:`follow` is how a tool call waits for a job: it sends the protocol's progress notifications (when the
client asked for them) while the job runs, and cancels the job when the call itself is cancelled.

:class:`Runs` names output folders by short ids (the folder's name, made unique) and allows one job per
folder at a time; a second is refused, naming the first. (The run's file lock, taken by ``grounded.label``
and ``export_run``, also refuses another process writing the same folder.)
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from grounded.errors import GroundedError, InputError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often a waiting tool call looks at its job (and reports progress when it moved)


class Cancelled(BaseException):  # noqa: N818  (a stop signal, like KeyboardInterrupt, not an error)
    """Raised inside a job's work by :meth:`Progress.check` once the job is cancelled."""


@dataclass
class Progress:
    """What a job has done (``done`` of ``total`` ``unit``) and whether it should stop."""

    done: int = 0
    total: int | None = None
    unit: str = "items"
    message: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Raise :class:`Cancelled` when the job was cancelled (call it between steps)."""
        if self.cancel.is_set():
            raise Cancelled

    def advance(self, n: int = 1) -> None:
        self.done += n

    def text(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.done}{total} {self.unit}" + (f": {self.message}" if self.message else "")


class Job:
    """``work(progress) -> dict`` on a daemon thread; ``state`` running -> done | failed | cancelled."""

    def __init__(self, kind: str, work: Callable[[Progress], Any], run: str | None = None,
                 folder: Path | None = None) -> None:
        self.kind, self.run, self.folder = kind, run, folder
        self.progress = Progress()
        self.state = "running"
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.result: Any = None
        self.started, self.ended = time.time(), None
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(work,), name=f"grounded-mcp-{kind}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    def _main(self, work: Callable[[Progress], Any]) -> None:
        try:
            self.result = work(self.progress)
            self.state = "done"
        except Cancelled:
            self.state = "cancelled"
        except GroundedError as exc:
            self.state, self.error, self.exception = "failed", str(exc), exc
        except Exception as exc:  # noqa: BLE001  (reported on the job, never lost)
            logger.exception("%s job on %s failed", self.kind, self.folder)
            self.state, self.error, self.exception = "failed", f"{type(exc).__name__}: {exc}", exc
        finally:
            self.ended = time.time()
            self.finished.set()

    @property
    def running(self) -> bool:
        return not self.finished.is_set()

    def cancel(self) -> None:
        self.progress.cancel.set()

    def outcome(self) -> Any:
        """The work's result; re-raises what the work raised (for a tool that waited on it)."""
        if self.exception is not None:
            raise self.exception
        return self.result

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: kind, state, progress, error, times."""
        p = self.progress
        return {"kind": self.kind, "state": self.state, "done": p.done, "total": p.total, "unit": p.unit,
                "message": p.message, "error": self.error, "started": round(self.started, 3),
                "seconds": round((self.ended or time.time()) - self.started, 3),
                "cancel_requested": p.cancel.is_set()}


async def follow(ctx: Any, job: Job, poll: float = POLL_SECONDS) -> Job:
    """Wait for ``job``, sending progress notifications as it moves; a cancelled call cancels the job.

    ``ctx``: the tool's :class:`mcp.server.mcpserver.Context` (None: no notifications)."""
    sent: int | None = None
    try:
        while job.running:
            p = job.progress
            if ctx is not None and (sent is None or p.done > sent):  # progress values must increase
                sent = p.done
                await ctx.report_progress(p.done, p.total, p.text())
            await anyio.sleep(poll)
    except anyio.get_cancelled_exc_class():
        job.cancel()
        raise
    return job


async def run_and_follow(ctx: Any, kind: str, work: Callable[[Progress], Any]) -> Any:
    """Run ``work`` as an unregistered job for the length of one tool call; its result (or its exception)."""
    job = await follow(ctx, Job(kind, work).start())
    return job.outcome()


class Runs:
    """Output folders by id, and the job running on each (at most one)."""

    def __init__(self) -> None:
        self._folders: dict[str, Path] = {}
        self._jobs: dict[Path, Job] = {}
        self._lock = threading.RLock()

    def id_for(self, folder: Path) -> str:
        """The folder's id, made on first sight: its name (``[A-Za-z0-9._-]``), ``-2``, ``-3`` ... when taken."""
        with self._lock:
            for run, known in self._folders.items():
                if known == folder:
                    return run
            base = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-.") or "run"
            run, n = base, 1
            while run in self._folders:
                n += 1
                run = f"{base}-{n}"
            self._folders[run] = folder
            return run

    def folder(self, run: str) -> Path | None:
        return self._folders.get(run)

    def job(self, folder: Path) -> Job | None:
        """The last job started on ``folder`` by this server (running or not)."""
        return self._jobs.get(folder)

    def check_idle(self, folder: Path) -> None:
        """InputError naming the job when one runs on ``folder``."""
        current = self._jobs.get(folder)
        if current is not None and current.running:
            raise InputError(f"run {self.id_for(folder)!r} ({folder}) is busy with a {current.kind} job "
                             f"({current.progress.text()}); wait for it (run_status) or cancel it first")

    def start(self, folder: Path, kind: str, work: Callable[[Progress], Any]) -> Job:
        """Start ``work`` on ``folder`` unless a job already runs there (InputError naming it)."""
        run = self.id_for(folder)
        with self._lock:
            self.check_idle(folder)
            job = self._jobs[folder] = Job(kind, work, run, folder)
        return job.start()

    def listing(self) -> list[dict[str, Any]]:
        """Every known run: id, folder and its last job's state."""
        with self._lock:
            items = list(self._folders.items())
        return [{"run": run, "folder": str(folder),
                 "job": self._jobs[folder].snapshot() if folder in self._jobs else None} for run, folder in items]
