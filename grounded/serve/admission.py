"""How many segment requests a server holds at once: a bound applied before an upload is read.

The models serve one request at a time (:mod:`grounded.serve.engine`); every other admitted request holds
its upload and, once decoded, its image while it waits, so a server's memory grows with the number admitted.
:class:`Admission` admits at most ``capacity`` segment requests (the one running included). The app's
middleware asks it before the request's body is read: the rest are answered at once with 503 and a
``Retry-After`` (seconds: the mean time one request holds the models, times the requests ahead), their
bodies never read. A lock keeps the count exact wherever the middleware runs (one event loop, or a test
client's several).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from grounded.errors import InputError

DEFAULT_MAX_QUEUE = 4  # one running + three waiting: enough for the page and a few scripts, memory bounded


class Admission:
    """Counts the segment requests in flight and refuses those over ``capacity``."""

    def __init__(self, capacity: int = DEFAULT_MAX_QUEUE) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InputError(f"max_queue must be a positive integer (requests admitted at once), got {capacity!r}")
        self.capacity = capacity
        self.in_flight = 0  # admitted and not yet answered: reading, decoding, waiting or running
        self.turned_away = 0  # answered 503 since the server started
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Admit one more request (True) or count it turned away (False)."""
        with self._lock:
            if self.in_flight >= self.capacity:
                self.turned_away += 1
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def retry_after(self, seconds_per_request: float | None) -> int:
        """Whole seconds until a slot is likely free (at least 1; 1 s per request before any has run)."""
        return max(1, math.ceil((seconds_per_request or 1.0) * self.in_flight))

    def report(self, running: bool) -> dict[str, Any]:
        """For ``/v1/health``: in flight (the ``running`` one included), queued behind it, capacity, turned away."""
        return {"in_flight": self.in_flight, "queued": max(0, self.in_flight - int(running)),
                "capacity": self.capacity, "turned_away": self.turned_away}
