"""The pipeline: captions from an ontology, detection selection, the Predictor, the one-call API."""
