"""Distillation: train a small student of your own on the teacher's labels, evaluate it, export it.

The loop, from Python (the ``grounded train / evaluate / predict / distill`` commands call the same)::

    from grounded.distill import StudentConfig, TrainConfig, train_run, evaluate_run, StudentPredictor

    train_run("runs/labels", "runs/student", StudentConfig(), TrainConfig(budget_minutes=30))   # FastSeg, 30 min
    metrics, report_dir = evaluate_run("runs/student")            # val and test side by side: IoU, mIoU, AP, gap
    detections = StudentPredictor.load("runs/student/student.onnx").predict("photo.jpg")   # sv.Detections

Modules, in the order data flows:

- :mod:`~.data`: datasets (label runs, COCO, YOLO-seg, mask PNGs), lazy; :mod:`~.splits`: train / val / test,
  the test split held out first by seed (nothing chooses with it), or k seeded folds for small datasets
  (``TrainConfig.folds``); :mod:`~.soft`: the teacher's soft masks (``grounded label --soft-masks``) as targets;
- :mod:`~.cache`: every item decoded once, letterboxed to the training size and held in memory (images,
  class maps, instance-boundary maps);
- :mod:`~.augment`: letterboxing, flip (left/right classes swapped) / multi-scale class-balanced crops /
  colour jitter on image and maps together; opt-in small rotations, blur and JPEG noise (AugmentConfig);
- :mod:`~.students`: FastSeg (real-time, pure torch, the default) and U-Net (pure torch); SegFormer,
  DeepLabV3 + MobileNetV2, MobileViTV2 and an AutoBackbone U-Net (transformers); parameters and GFLOPs;
- :mod:`~.losses`: cross-entropy + Dice (+ focal, + opt-in Lovász-softmax), class weights from label
  frequencies, boundary BCE;
- :mod:`~.budget`: a wall-time budget turned into a number of steps, re-planned as the machine's speed changes;
- :mod:`~.train`: AdamW under the project's one warm-up + cosine schedule, AMP on CUDA, best-by-validation
  checkpoints (:mod:`~.validation`; optionally of EMA weights, :mod:`~.ema`), resume, the test split scored once;
- :mod:`~.checkpoint`: safetensors + JSON (the project's one format); :mod:`~.export`: ONNX and onnxruntime;
- :mod:`~.predictor` + :mod:`~.instances`: images -> class and boundary probabilities -> ``sv.Detections``
  (touching objects of one class split by the boundary head, or connected components);
- :mod:`~.metrics` + :mod:`~.evaluate`: IoU / mIoU / pixel accuracy and pycocotools mask AP, reports; the
  k-fold students' held-out folds pooled into one estimate;
- :mod:`~.workflow`: the steps chained (train -> export -> evaluate; label -> train for ``distill``).

Heavy imports (torch, transformers) happen when a name is first used, not on ``import grounded.distill``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "StudentConfig": "config", "TrainConfig": "config", "AugmentConfig": "config",
    "build_student": "students", "Student": "students", "profile": "students", "parse_budget": "budget",
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
