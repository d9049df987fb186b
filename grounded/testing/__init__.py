"""Test support: tiny randomly initialised models and a fake predictor (test double)."""
