"""MM-Grounding-DINO (``MMGroundingDinoForObjectDetection``, model_type ``mm-grounding-dino``) as a Detector.

Role: open-vocabulary detector. Checkpoints: ``openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det``
(Swin-T + BERT-base: the default config's architecture), the other
``openmmlab-community/mm_grounding_dino_*`` checkpoints and LLMDet's (``iSEE-Laboratory/llmdet_*``).
Licence: the weights come from MMDetection's open re-training of Grounding DINO (MMDetection is Apache-2.0);
read each model card for the weights' own terms. Needs nothing beyond the core install.

MM-Grounding-DINO is Grounding DINO's architecture with a biased contrastive class head and per-layer
(unshared) decoder heads; its processor is Grounding DINO's (``GroundingDinoProcessor``: BERT tokenizer,
800 px short side), and its inputs and outputs have the same shapes and meaning. So the Grounding DINO
backend (:class:`grounded.models.backends.grounding_dino.GroundingDinoDetector`) serves it with only the model class
changed: the Swin backbone runs once per image in ``encode``; ``detect`` packs the ontology's phrases into
captions with exact token spans (the 256-token split), scores them in one batch and reads each box's phrase
and class from the spans. Every option Grounding DINO honours is honoured here (``box_threshold``,
``text_threshold`` and their per-class forms); no NMS inside.

Before this backend, a ``mm-grounding-dino`` checkpoint was loaded as ``GroundingDinoForObjectDetection``,
whose class heads have no bias: the checkpoint's class-head biases were not loaded.
"""

from __future__ import annotations

from typing import Any

from grounded.models.backends.grounding_dino import GroundingDinoDetector


class MMGroundingDinoDetector(GroundingDinoDetector):
    """MM-Grounding-DINO processor + model; everything else is the Grounding DINO backend."""


    @classmethod
    def classes(cls) -> tuple[Any, Any]:
        from transformers import AutoProcessor, MMGroundingDinoForObjectDetection

        return AutoProcessor, MMGroundingDinoForObjectDetection
