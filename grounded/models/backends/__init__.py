"""Backends beyond the default Grounding DINO + SAM pair, one module per model family.

Each module wraps one transformers model family behind an interface of :mod:`grounded.models.interfaces`
and is imported only when :mod:`grounded.models.registry` picks it for a checkpoint.
"""
