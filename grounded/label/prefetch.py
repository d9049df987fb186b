"""Run a function over inputs on a background thread, a bounded number of results ahead of the consumer.

Image decoding (Pillow releases the GIL while it decodes) then overlaps with the models, and memory stays
flat: at most ``depth`` results wait in the queue. ::

    with prefetched(decode, paths, depth=8) as images:
        for image in images:
            ...

An exception raised by ``fn`` is re-raised in the consumer at that item; leaving the ``with`` block early
(an error, Ctrl-C) stops the thread. ``depth=0`` runs ``fn`` in the consumer's thread (no thread at all).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

_END = object()


@contextmanager
def prefetched(fn: Callable[[In], Out], inputs: Iterable[In], depth: int) -> Iterator[Iterator[Out]]:
    if depth <= 0:
        yield (fn(x) for x in inputs)
        return
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in inputs:
                if stop.is_set() or not put((fn(x), None)):
                    return
        except BaseException as exc:  # handed to the consumer, re-raised there
            put((None, exc))
            return
        put(_END)

    def consume() -> Iterator[Out]:
        while True:
            item = results.get()
            if item is _END:
                return
            value, exc = item
            if exc is not None:
                raise exc
            yield value

    thread = threading.Thread(target=work, name="grounded-prefetch", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
