"""The splits a student is trained, chosen and scored on: train, validation and a held-out test split.

- **train**: what the optimiser sees;
- **val**: what chooses (the best checkpoint, the budget planner's validation passes);
- **test**: what nothing chooses with. It is scored once, after training, and by ``grounded evaluate``
  side by side with val, so the gap between the score that chose and an honest one shows in every run.

A dataset's own splits are used as given. Otherwise :func:`seeded_splits` draws them from one permutation
of the images by ``seed``: the test images first (``test_fraction`` of all, at least one when it is > 0),
then ``val_fraction`` of the rest. The test split therefore depends on the seed, the number of images and
``test_fraction`` only (not on ``val_fraction``).

**k-fold** (``TrainConfig.folds``), the estimate for a small dataset, where a held-out test split would be a
handful of images: the images a run trains on (all but the validation split) are cut by :func:`seeded_folds`
into k folds; :func:`fold_splits` gives one split per fold (train: the other folds, val: the run's, test: the
fold), so every image is scored once by a student that neither trained nor chose with it. :func:`folds_for`
decides: ``"auto"`` folds (k = :data:`AUTO_FOLDS`) when the seeded test split holds fewer than
:data:`MIN_TEST_IMAGES` images. (:func:`seeded_splits` itself keeps a test split whenever two images remain
beside it, a threshold far too low to be an estimate.) Near-duplicate images are not grouped, here or in the
splits above: each image is one item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import InputError
from grounded.utils.images import load_image

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
AUTO_FOLDS = 5  # k of TrainConfig.folds="auto"
MIN_TEST_IMAGES = 10  # "auto": a seeded test split of fewer images scores by k-fold instead (at the default
#                       test_fraction 0.15: datasets of fewer than 64 images)
HELD_OUT = "held-out test"  # the name of each estimate in run records and reports


def kfold_name(k: int) -> str:
    """The name of the k-fold estimate in run records and reports: ``"k-fold, k=5"``."""
    return f"k-fold, k={k}"


@dataclass
class View:
    """The items ``indices`` of ``source``: one split. Same item interface as the source."""

    source: Any
    indices: list[int]

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def image_path(self, i: int) -> Path:
        return self.source.image_path(self.indices[i])

    def image(self, i: int) -> np.ndarray:
        return load_image(self.image_path(i))

    def detections(self, i: int):  # noqa: ANN201 (sv.Detections)
        return self.source.detections(self.indices[i])

    def semantic(self, i: int) -> np.ndarray:
        return self.source.semantic(self.indices[i])


@dataclass
class DataSplits:
    train: View
    val: View
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # kind, path, how it was split, what was skipped
    test: View | None = None  # held out: never trained on, never chosen with (None or empty: no test split)

    def views(self) -> dict[str, View]:
        """The non-empty splits by name, in the order train, val, test."""
        return {name: view for name in SPLITS if (view := getattr(self, name)) is not None and len(view)}

    def files(self) -> dict[str, list[str]]:
        """Image paths of each split (``split.json`` of a run records them)."""
        return {name: [str(view.image_path(i)) for i in range(len(view))] for name, view in self.views().items()}


def _count(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def seeded_splits(n: int, val_fraction: float | None, seed: int, test_fraction: float = 0.0
                  ) -> tuple[list[int], list[int], list[int]]:
    """Split ``range(n)`` by ``seed`` into (train, val, test) indices, each sorted (see the module docstring).

    ``val_fraction`` None: the dataset has its own validation split, so none is drawn here. A test split that
    would leave fewer than two images (one without validation to draw) is not kept, with a warning."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_test = _count(n, test_fraction)
    if n_test and n - n_test < (1 if val_fraction is None else 2):
        logger.warning("%d image(s) are too few to hold out a test split (test_fraction %.2f): keeping none", n,
                       test_fraction)
        n_test = 0
    test, rest = order[:n_test], order[n_test:]
    if val_fraction is None:
        return sorted(rest), [], sorted(test)
    if len(rest) < 2:
        raise InputError(f"a dataset of {n} usable image(s) cannot be split into train and validation; add images")
    n_val = min(_count(len(rest), val_fraction), len(rest) - 1)
    return sorted(rest[n_val:]), sorted(rest[:n_val]), sorted(test)


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` at random by ``seed``: (train indices, val indices), each sorted (no test split)."""
    train, val, _ = seeded_splits(n, val_fraction, seed)
    return train, val



def seeded_folds(items: list[Any], k: int, seed: int) -> list[list[Any]]:
    """Cut ``items`` into ``k`` folds by ``seed``: disjoint, covering ``items``, sizes differing by at most one,
    each in the order of ``items``; the same for the same (items, k, seed)."""
    if not 2 <= k <= len(items):
        raise InputError(f"{len(items)} image(s) cannot be cut into {k} folds: folds needs 2 <= k <= the number of "
                         "training images; lower --folds or add images")
    order = np.random.default_rng(seed).permutation(len(items))
    return [[items[j] for j in sorted(order[f::k].tolist())] for f in range(k)]


def fold_splits(splits: DataSplits, k: int, seed: int) -> list[DataSplits]:
    """One :class:`DataSplits` per fold of ``splits.train`` (:func:`seeded_folds`): train on the other folds,
    validate on ``splits.val``, test on the fold."""
    pool = splits.train
    folds = seeded_folds(list(pool.indices), k, seed)
    return [DataSplits(View(pool.source, sorted(j for g, other in enumerate(folds) if g != f for j in other)),
                       splits.val, splits.class_names, {**splits.info, "fold": f"{f + 1} of {k}"},
                       View(pool.source, fold)) for f, fold in enumerate(folds)]


def folds_for(splits: DataSplits, folds: int | str, test_fraction: float) -> int:
    """How many folds a run on ``splits`` (opened with ``test_fraction``) scores by; 0: its held-out test split.

    ``folds`` k >= 2 asks for k (refused when the dataset has a test split of its own, which is the estimate);
    ``"auto"``: :data:`AUTO_FOLDS` (at most one per image) when the test split is seeded (``test_fraction`` > 0)
    and holds fewer than :data:`MIN_TEST_IMAGES` images, else 0; 0: none."""
    given = splits.info.get("test_split") == "given"
    if folds == "auto":
        held_out = len(splits.test or [])
        if given or not test_fraction or held_out >= MIN_TEST_IMAGES:
            return 0
        k = min(AUTO_FOLDS, len(splits.train) + held_out)
        if k < 2:
            logger.warning("%d training image(s) are too few for k-fold scoring: no estimate", k)
            return 0
        logger.info("a held-out test split of %d image(s) (fewer than %d): scoring by %s instead", held_out,
                    MIN_TEST_IMAGES, kfold_name(k))
        return k
    if folds and given:
        raise InputError(f"dataset {splits.info.get('path')} has a test split of its own, the honest estimate: "
                         "drop --folds (or use --folds auto, which keeps it)")
    held_out = len(splits.test or [])
    if not folds and not given and 0 < held_out < MIN_TEST_IMAGES:
        logger.warning("the held-out test split has %d image(s): too few for an estimate (a wide interval); "
                       "--folds auto scores by k-fold instead", held_out)
    return int(folds)
