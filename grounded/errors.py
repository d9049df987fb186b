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
