"""Distillation: train a small student of your own on the teacher's labels, evaluate it, export it.

The loop, from Python (the ``grounded train / evaluate / predict / distill`` commands call the same)::

    from grounded.distill import StudentConfig, TrainConfig, train_run, evaluate_run, StudentPredictor

    train_run("runs/labels", "runs/student", StudentConfig(arch="unet", size="small"), TrainConfig(epochs=40))
    metrics, report_dir = evaluate_run("runs/student")            # val split: IoU, mIoU, mask AP
    detections = StudentPredictor.load("runs/student/student.onnx").predict("photo.jpg")   # sv.Detections

Modules, in the order data flows:

- :mod:`~.data`: datasets (label runs, COCO, YOLO-seg, mask PNGs), lazy, split by seed;
- :mod:`~.augment`: letterboxing, flip / scale-and-crop / colour jitter on image and mask together;
- :mod:`~.students`: U-Net (pure torch), SegFormer and AutoBackbone U-Net (transformers);
- :mod:`~.losses`: cross-entropy + Dice (+ focal), class weights from label frequencies;
- :mod:`~.train`: AdamW, warm-up + cosine, AMP, best-by-validation checkpoints, resume;
- :mod:`~.checkpoint`: safetensors + JSON; :mod:`~.export`: ONNX and onnxruntime;
- :mod:`~.predictor` + :mod:`~.instances`: images -> class probabilities -> ``sv.Detections``;
- :mod:`~.metrics` + :mod:`~.evaluate`: IoU / mIoU / pixel accuracy and pycocotools mask AP, reports;
- :mod:`~.workflow`: the steps chained (train -> export -> evaluate; label -> train for ``distill``).

Heavy imports (torch, transformers) happen when a name is first used, not on ``import grounded.distill``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StudentConfig": "config", "TrainConfig": "config", "AugmentConfig": "config",
    "build_student": "students", "Student": "students",
    "open_dataset": "data", "TrainResult": "train",  # the function train: grounded.distill.train.train
    "save_student": "checkpoint", "load_student": "checkpoint",
    "export_onnx": "export", "StudentPredictor": "predictor",
    "evaluate_student": "evaluate", "evaluate_labels": "evaluate",
    "train_run": "workflow", "evaluate_run": "workflow", "distill": "workflow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grounded.distill' has no attribute {name!r}")
    return getattr(importlib.import_module(f"grounded.distill.{_EXPORTS[name]}"), name)
