"""CLIP in the loop: text embeddings as SAM prompts, and CLIP checks on what the detector named.

- :mod:`grounded.clip.encoders`: one small interface over CLIP backends (transformers ``CLIPModel``, default;
  ``open_clip_torch``, extra ``openclip``): L2-normalised text and image-crop embeddings, texts cached.
- :mod:`grounded.clip.adapter`: ``TextPromptAdapter``, a CLIP text embedding -> k sparse prompt tokens of SAM.
- :mod:`grounded.clip.decoding`: SAM's mask decoder with box tokens, text tokens, or both.
- :mod:`grounded.clip.verify`: ``verify="clip"``, CLIP scores each masked crop against the ontology's classes.
- :mod:`grounded.clip.train`: training an adapter against the pipeline's own box-prompted masks.
- :mod:`grounded.clip.runtime`: what the Predictor holds when ``clip=`` / ``adapter=`` are given.
- (the stages that take a Predictor's output live in :mod:`grounded.pipeline.clip_stage` and use these.)

Nothing here is imported by the pipeline unless those options are used.
"""
