"""Fixtures of the pipeline tests: a Predictor whose backends are the fakes of tiling_fakes.py."""

from __future__ import annotations

import pytest
from tiling_fakes import FakeConcept, FakeDetector, FakeSegmenter


@pytest.fixture
def fake_predictor():
    """A grounded.Predictor over the fakes, built backends: ``fake_predictor(concept=False, **options)``."""
    from grounded import Predictor

    def build(concept: bool = False, **options):
        if concept:
            return Predictor(model=FakeConcept(), **options)
        return Predictor(detector=FakeDetector(), segmenter=FakeSegmenter(), **options)

    return build
