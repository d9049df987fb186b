"""Fixtures of the pipeline tests: a Predictor whose backends are the fakes of tiling_fakes.py."""

from __future__ import annotations

import pytest
from tiling_fakes import FakeConcept, FakeDetector, FakeSegmenter


@pytest.fixture
def fake_predictor(tiny_model_dirs):
    """A grounded.Predictor whose backends are replaced by the fakes: ``fake_predictor(concept=False)``."""
    from grounded import Predictor

    def build(concept: bool = False, **options):
        predictor = Predictor(*map(str, tiny_model_dirs), **options)
        if concept:
            predictor.detector = predictor.segmenter = None
            predictor.model = FakeConcept()
        else:
            predictor.detector, predictor.segmenter = FakeDetector(), FakeSegmenter()
        for _, backend in predictor.backends():
            backend.timer = predictor.timer
        return predictor

    return build
