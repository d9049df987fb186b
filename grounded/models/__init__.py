"""Model wrappers over transformers: Grounding DINO (detector), SAM (segmenter). Tensors in, tensors out."""
