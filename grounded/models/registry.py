"""Which backend class serves which checkpoint: chosen by ``model_type`` in the checkpoint's config.json.

``BACKENDS`` maps each supported ``model_type`` to its role (``"detector"``, ``"segmenter"`` or
``"model"``, a concept segmenter) and the backend class, as ``"module:Class"`` so that nothing is imported
before it is used (backends whose processors need torchvision/timm import them only when chosen).

``load_backend(name, role, device, dtype, local_files_only)`` reads the checkpoint's config (a local folder or
a cached / downloadable Hugging Face name), looks its ``model_type`` up here and loads the backend; an
unsupported type, or a checkpoint of another role, is an error that lists the supported ones.
"""

from __future__ import annotations

# model_type -> (role, "module:Class"). Keep in step with the README's models table.
BACKENDS: dict[str, tuple[str, str]] = {
    # open-vocabulary detectors
    "grounding-dino": ("detector", "grounded.models.detector:GroundingDinoDetector"),
    "mm-grounding-dino": ("detector", "grounded.models.backends.mm_grounding_dino:MMGroundingDinoDetector"),
    "owlv2": ("detector", "grounded.models.backends.owlv2:Owlv2Detector"),
    "omdet-turbo": ("detector", "grounded.models.backends.omdet_turbo:OmDetTurboDetector"),
    # promptable segmenters (boxes -> masks)
    "sam": ("segmenter", "grounded.models.segmenter:SamSegmenter"),
    "sam_hq": ("segmenter", "grounded.models.backends.sam_hq:SamHQSegmenter"),
    "sam2": ("segmenter", "grounded.models.backends.sam2:Sam2Segmenter"),
    "edgetam": ("segmenter", "grounded.models.backends.sam2:EdgeTamSegmenter"),
    # concept segmenters (image + text -> masks)
    "sam3": ("model", "grounded.models.backends.sam3:Sam3ConceptSegmenter"),
}
