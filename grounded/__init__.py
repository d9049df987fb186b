"""grounded: open-vocabulary grounded segmentation. Name things, get their masks.

    import grounded
    detections = grounded.segment("truck.jpg", "a wheel")      # sv.Detections with masks

    predictor = grounded.Predictor()                            # models loaded once
    predictor.set_image("truck.jpg")                            # image encoders run once
    predictor.segment("a wheel"); predictor.segment(["car", "headlight"])

    ontology = grounded.Ontology.from_yaml("prompts/car_parts.yaml")   # synonyms -> one class id
    summary = grounded.label("photos/", ontology, "dataset/")            # auto-label a folder

Models (Hugging Face names or local folders): by default Grounding DINO ``IDEA-Research/grounding-dino-tiny``
finds and names boxes and SAM ``facebook/sam-vit-base`` turns each box into a mask; ``detector=`` /
``segmenter=`` take other families (MM-Grounding-DINO, OWLv2, OmDet-Turbo; SAM-HQ, SAM 2, EdgeTAM) and
``model=`` a concept segmenter (SAM 3), chosen by the checkpoint's ``model_type`` (grounded/models/registry.py).
Importing this package loads no model, touches no device and downloads nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it; imported on first use so `import grounded` stays light.
_LAZY = {
    "segment": "grounded.pipeline.api",
    "Predictor": "grounded.pipeline.predictor",
    "load_predictor": "grounded.pipeline.predictor",
    "Ontology": "grounded.ontology",
    "ModelConfig": "grounded.config",
    "SegmentOptions": "grounded.config",
    "load_image": "grounded.utils.images",
    "label": "grounded.label",
    "track": "grounded.video.run",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover  (`X as X`: re-exported, for type checkers and IDEs)
    from grounded.config import ModelConfig as ModelConfig
    from grounded.config import SegmentOptions as SegmentOptions
    from grounded.label import label as label
    from grounded.ontology import Ontology as Ontology
    from grounded.pipeline.api import segment as segment
    from grounded.pipeline.predictor import Predictor as Predictor
    from grounded.pipeline.predictor import load_predictor as load_predictor
    from grounded.utils.images import load_image as load_image


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = import_module(_LAZY[name])
        # grounded.label is a callable package (its __init__): the package itself, never the function, so the
        # name keeps its submodules (grounded.label.records) whichever import comes first
        value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'grounded' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
