"""Exceptions raised by grounded.

Every error raised for bad user input names the input and says how to fix it. The command line prints
``str(error)`` as one line and exits non-zero; Python callers can catch :class:`GroundedError`.
"""

from __future__ import annotations


class GroundedError(Exception):
    """Base class of every error grounded raises on purpose."""


class InputError(GroundedError, ValueError):
    """An image, prompt, option or file given by the caller is unusable."""


class ModelLoadError(GroundedError, OSError):
    """A model (Hugging Face name or local folder) could not be loaded."""


class OrderError(GroundedError, RuntimeError):
    """A stateful object was used out of order (e.g. ``segment`` before ``set_image``)."""


class DiskFullError(GroundedError, OSError):
    """The disk filled up (``ENOSPC``) while grounded was writing; the message says what and what is intact."""


QUOTE_LIMIT = 200  # error messages quote at most this many characters of the caller's input


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters, never built in full.

    Nested containers are cut by :mod:`reprlib` before they are formatted, so a YAML alias bomb (a few
    shared lists that expand to millions of items) or a 25 MB string quotes in microseconds.
    """
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 4, limit, limit, 40
    short.maxtuple = short.maxlist = short.maxarray = short.maxdict = short.maxset = short.maxfrozenset = 8
    short.maxdeque = 8
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
