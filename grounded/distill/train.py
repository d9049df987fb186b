"""Training a student: ``train(dataset, out, StudentConfig(...), TrainConfig(...)) -> TrainResult``.

What it does, in order:

1. opens the dataset (:func:`grounded.distill.data.open_dataset`; the test split, then validation, drawn by
   seed when the dataset has none; the splits' files go to ``split.json``) and decodes train and val once into
   memory at the training size (:mod:`grounded.distill.cache`);
2. seeds torch and builds the student (pretrained weights when named; random otherwise) and logs its
   parameters and GFLOPs at the training size;
3. counts label pixels for class-weighted cross-entropy and class-balanced crops;
4. trains with AdamW under the project's one schedule (:func:`grounded.utils.schedule.warmup_cosine`) laid
   over the run's total steps: ``total_steps``; else ``epochs`` x steps per epoch; else ``max_steps``; else
   the steps that fit ``budget_minutes`` (default :data:`~grounded.distill.config.DEFAULT_BUDGET_MINUTES`),
   planned by :class:`~grounded.distill.budget.BudgetPlanner`. ``max_steps`` with epochs or a budget
   stops early without changing the schedule. Autocast where it pays: float16 + grad scaling on CUDA;
   ``amp="bf16"`` opts in on CPU. A tqdm bar shows loss, learning rate and val mIoU;
5. validates every ``val_every`` epochs (a budget spreads ~8 validations over the run) on the letterboxed
   validation images (mIoU, pixel accuracy, loss) and keeps the best student by mIoU as
   ``student.safetensors`` + ``student.json`` (with ``ema``: the averaged weights, :mod:`~.ema`, are validated
   and kept);
6. saves ``last.*`` + ``train_state.pt`` at every validation (and every ``checkpoint_every`` steps), so an
   interrupted run resumes where it stopped: calling ``train`` again on the same ``out`` continues it;
7. scores the kept student once on the test split, which nothing before read (not training, not the checkpoint
   choice, not the budget), letterboxed as validation is: ``TrainResult.test``; writes ``history.json`` and
   ``training_curve.png`` (the test score marked at the kept student's step).

Determinism: given ``seed``, the initial weights, the data order (one permutation per epoch, from
``(seed, epoch)``) and the augmentations (per sample, from ``(seed, epoch, index)``) are fixed; the global torch
RNG (dropout, drop-path) is saved in ``train_state.pt``. On CPU, an interrupted and resumed run with a fixed
schedule (epochs or steps) ends with the same weights as an uninterrupted one. A budgeted run's length
depends on the machine's speed, by design.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from grounded.distill.budget import BudgetPlanner
from grounded.distill.cache import CachedData, CachedSet, crop_weights
from grounded.distill.checkpoint import load_state, load_student, read_record, save_state, save_student
from grounded.distill.config import DEFAULT_BUDGET_MINUTES, StudentConfig, TrainConfig
from grounded.distill.data import DataSplits, open_dataset
from grounded.distill.ema import Ema
from grounded.distill.evaluate import plot_history
from grounded.distill.losses import SegmentationLoss, class_weights
from grounded.distill.students import Student, build_student, profile
from grounded.distill.validation import at_loss_scale, score_test, validate
from grounded.errors import InputError
from grounded.formats.files import atomic_write_text
from grounded.models.loading import resolve_device
from grounded.utils.schedule import warmup_cosine

logger = logging.getLogger(__name__)

# TrainConfig fields a resumed run takes from the new call (they do not change what is trained).
RUN_CONTROL = ("max_steps", "checkpoint_every", "num_workers", "device")


@dataclass
class TrainResult:
    out: Path
    best_miou: float
    best_epoch: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    planned_steps: int = 0  # the schedule's length (a budget's plan, or epochs x steps per epoch, ...)
    final_lr: float = 0.0  # the learning rate of the last step taken
    profile: dict[str, float] = field(default_factory=dict)  # params, GFLOPs at the training size
    seconds: float = 0.0
    test: dict[str, Any] | None = None  # the kept student on the test split: step, images, miou, pixel_accuracy


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a seeded permutation cut into full batches (a ragged last batch is dropped)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    size = min(batch_size, n)
    return [order[i : i + size] for i in range(0, n - size + 1, size)]


def _autocast(device: torch.device, amp: str):  # noqa: ANN202
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "auto" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def _start(out: Path, splits: DataSplits, student_cfg: StudentConfig, cfg: TrainConfig, resume: bool):  # noqa: ANN202
    """(student, training state or None, config): fresh, or the last saved student, its state and config."""
    if resume and (out / "train_state.pt").is_file():
        record, _ = read_record(out / "last.json")
        if record["student"]["class_names"] != splits.class_names:
            raise InputError(f"{out} holds a run on other classes; pass a new --out or --no-resume")
        saved = TrainConfig.from_dict(record["train"])
        for name in RUN_CONTROL:  # how long and where to run may change; what is trained may not
            setattr(saved, name, getattr(cfg, name))
        if saved != cfg:
            logger.warning("resuming %s with its saved training config (the one given differs)", out)
        student, _ = load_student(out / "last.safetensors")
        return student, load_state(out), saved
    student_cfg = StudentConfig.from_dict({**student_cfg.to_dict(), "class_names": list(splits.class_names)})
    torch.manual_seed(cfg.seed)  # the caller's config is left as given: the run's copy gets the classes
    return build_student(student_cfg), None, cfg


def train(
    dataset: str | Path | DataSplits,
    out: str | Path,
    student: StudentConfig | None = None,
    config: TrainConfig | None = None,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int, int | None], None] | None = None,
) -> TrainResult:
    """Train (or resume training) a student on ``dataset`` into the run folder ``out``; see the module docstring.

    ``on_step(step, planned steps or None)`` is called after every step (progress reports; an exception it
    raises stops the run, which resumes from its last checkpoint)."""
    started = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or TrainConfig()
    splits = (dataset if isinstance(dataset, DataSplits)
              else open_dataset(dataset, cfg.val_fraction, cfg.seed, test_fraction=cfg.test_fraction))
    atomic_write_text(out / "split.json", json.dumps({"info": splits.info, **splits.files()}, indent=1))
    model, state, cfg = _start(out, splits, student or StudentConfig(), cfg, resume)
    device = resolve_device(cfg.device)
    stats = _place(model, device, cfg)
    data = _prepare_data(splits, model.config.num_classes, cfg, device, progress)
    if device.type == "cpu" and torch.get_num_threads() > 1 and not state:
        _pick_threads(model, data.train, data.loss_fn, cfg)
    run = _Run(out, model, cfg, device, data, started,
               extra={"train": cfg.to_dict(), "data": splits.info, "val_images": len(splits.val),
                      "test_images": len(splits.test or []), "profile": stats})
    if state:
        run.restore(state)
    run.loop(progress, on_step)
    test = score_test(out, splits.test, cfg, device, data.loss_fn, progress) if run.best["epoch"] >= 0 else None
    return run.finish(stats, started, test)


def _place(model: Student, device: torch.device, cfg: TrainConfig) -> dict[str, float]:
    """Move the student to ``device`` (channels-last when asked); log and return its size (params, GFLOPs)."""
    model.to(device)
    stats = profile(model, cfg.image_size)
    logger.info("student %s/%s: %.2f M parameters, %.2f GFLOPs at %d px", model.config.arch, model.config.size,
                stats["params"] / 1e6, stats["gflops"], cfg.image_size)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return stats


@dataclass
class _Data:
    train: CachedSet  # augmented, class-balanced crops
    val: CachedSet  # letterboxed
    loss_fn: SegmentationLoss  # weighted by the training labels
    steps_per_epoch: int
    workers: int  # DataLoader workers


def _prepare_data(splits: DataSplits, num_classes: int, cfg: TrainConfig, device: torch.device,
                  progress: bool) -> _Data:
    """Decode both splits once at the training size; count label pixels for class-weighted cross-entropy and
    class-balanced crops, and boundary pixels for the boundary loss's positive weight. ``soft_weight``: the
    training images' soft masks too (a label run that has them, grounded.distill.soft)."""
    if cfg.soft_weight and not splits.info.get("soft_masks"):
        raise InputError(f"soft_weight {cfg.soft_weight} needs a `grounded label --soft-masks` run; "
                         f"{splits.info.get('path')} has no soft masks: label with --soft-masks or leave it at 0")
    train_data = CachedData.build(splits.train, cfg.image_size, progress=progress, desc="cache train",
                                  soft=cfg.soft_weight > 0)
    val_data = CachedData.build(splits.val, cfg.image_size, progress=progress, desc="cache val")
    counts = train_data.pixel_counts(num_classes)
    weight = torch.from_numpy(class_weights(counts)).to(device) if cfg.class_weights else None
    fraction = train_data.boundary_fraction()
    pos_weight = float(np.clip((1 - fraction) / fraction, 1.0, 20.0)) if fraction > 0 else 1.0
    loss_fn = SegmentationLoss(weight, cfg.dice_weight, cfg.focal_weight, cfg.focal_gamma, cfg.boundary_weight,
                               pos_weight, cfg.lovasz_weight, cfg.soft_weight).to(device)
    train_set = CachedSet(train_data, cfg.augment, cfg.seed, crop_weights(counts))
    workers = cfg.num_workers if cfg.num_workers >= 0 else (2 if device.type == "cuda" else 0)
    return _Data(train_set, CachedSet(val_data), loss_fn,
                 len(epoch_batches(len(train_set), cfg.batch_size, cfg.seed, 0)), workers)


class _Run:
    """One run's moving parts: the schedule (total steps, warm-up, next validation; a budget's planner), the
    optimiser, and the record (step, history, best). Each method is one named step of :func:`train`."""

    def __init__(self, out: Path, model: Student, cfg: TrainConfig, device: torch.device, data: _Data,
                 started: float, extra: dict[str, Any]) -> None:
        self.out, self.model, self.cfg, self.device, self.data, self.extra = out, model, cfg, device, data, extra
        # a validation pass is forward-only (about 0.4 of a step per batch), plus data handling
        self.total, self.planner = _plan(cfg, data.steps_per_epoch, started, 0.5 * -(-len(data.val) // cfg.batch_size))
        self.warmup = min(cfg.warmup_steps, max(1, self.total // 5)) if self.total else cfg.warmup_steps
        self.val_interval = cfg.val_every * data.steps_per_epoch
        self.next_val = self.val_interval
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = Ema(model, cfg.ema_decay) if cfg.ema else None  # what is validated and kept, when on
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "auto" and device.type == "cuda")
        self.step, self.history, self.best = 0, [], {"miou": -1.0, "epoch": -1}
        self.lr, self.stopped_early = cfg.lr, False
        self.window: list[float] = []  # losses since the last validation
        self.parts: dict[str, float] = {}  # the last step's loss terms
        self.bar: Any = None

    def restore(self, state: dict[str, Any]) -> None:
        """Continue an interrupted run: optimiser, scaler, RNG, record, and its plan (a budget is not re-planned)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        self.step, self.history, self.best = int(state["step"]), json.loads(state["history"]), json.loads(state["best"])
        if "total" in state and int(state["total"]) > 0:
            self.total, self.warmup, self.planner = int(state["total"]), int(state["warmup"]), None
            self.val_interval = int(state["val_interval"])
            self.next_val = (self.step // self.val_interval + 1) * self.val_interval
        logger.info("resuming %s at step %d of %s", self.out, self.step, self.total)

    def loop(self, progress: bool, on_step: Callable[[int, int | None], None] | None) -> None:
        """Step until the planned total (or ``max_steps``), validating and checkpointing on the way."""
        cfg = self.cfg
        self.bar = tqdm(total=self.total, initial=self.step, desc=f"train {self.model.config.arch}",
                        disable=not progress, dynamic_ncols=True)
        postfix: dict[str, str] = {}
        while self.total is None or self.step < self.total:
            for batch in self._rest_of_epoch():  # (pixels, target[, the teacher's distribution])
                self._optimise(*batch)
                self._fix_budget_once_timed()
                postfix.update(loss=f"{self.window[-1]:.3f}", lr=f"{self.lr:.1e}")
                self.bar.set_postfix(postfix, refresh=False)
                self.bar.update(1)
                if on_step is not None:
                    on_step(self.step, self.total)
                done = self.total is not None and self.step >= self.total
                self.stopped_early = not done and cfg.max_steps is not None and self.step >= cfg.max_steps
                if self.total is not None and (done or self.stopped_early or self.step >= self.next_val):
                    postfix["val_mIoU"] = self._validate(done)
                    self.checkpoint()
                elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.checkpoint()
                if done or self.stopped_early:
                    break
            if self.stopped_early:
                break
        self.bar.close()

    def _rest_of_epoch(self) -> DataLoader:
        """The current epoch's batches from the current step on (a resumed run starts mid-epoch)."""
        epoch, skip = divmod(self.step, self.data.steps_per_epoch)
        self.data.train.set_epoch(epoch)
        batches = epoch_batches(len(self.data.train), self.cfg.batch_size, self.cfg.seed, epoch)[skip:]
        self.model.train()
        return DataLoader(self.data.train, batch_sampler=batches, num_workers=self.data.workers,
                          pin_memory=self.device.type == "cuda")

    def _optimise(self, pixels: torch.Tensor, target: torch.Tensor, soft: torch.Tensor | None = None) -> None:
        """One AdamW step at the schedule's learning rate; the last step (index total - 1) runs at the bottom of
        the cosine, so the run ends decayed."""
        cfg = self.cfg
        self.lr = cfg.lr * warmup_cosine(self.step, self.warmup, (self.total or 10**9) - 1, cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        pixels, target = pixels.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
        if cfg.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device, cfg.amp):
            logits = self.model(pixels, full_size=False)
        logits, target = at_loss_scale(logits.float(), target, cfg.loss_scale)
        soft = None if soft is None else at_loss_scale(logits, soft.to(self.device), cfg.loss_scale)[1]
        loss, self.parts = self.data.loss_fn(logits, target, self.model.config.num_classes, soft)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.window.append(float(loss.detach()))

    def _fix_budget_once_timed(self) -> None:
        """A budget's planner fixes the run's total steps once its first steps are timed."""
        planner = self.planner
        planned_before = planner is not None and planner.total is not None
        if planner is not None and planner.step_done(self.step) is not None and not planned_before:
            self.total, self.next_val = planner.total, self.step + planner.val_interval()
            self.warmup = min(self.cfg.warmup_steps, max(1, self.total // 5))
            self.bar.total = self.total
            logger.info("budget %.1f min: %.2f s/step -> %d steps (%.1f epochs), next validation at %d",
                        planner.budget_s / 60, planner.step_seconds(), self.total,
                        self.total / self.data.steps_per_epoch, self.next_val)

    def _validate(self, done: bool) -> str:
        """Validate, keep the student when it is the best so far, and schedule the next validation (a budget
        re-plans the rest of the run). Returns the mIoU for the progress bar."""
        planner, cfg = self.planner, self.cfg
        if planner is not None:
            planner.validation_started()
        kept = self.model if self.ema is None else self.ema.module
        row = {"epoch": (self.step - 1) // self.data.steps_per_epoch, "step": self.step, "lr": self.lr,
               "train_loss": float(np.mean(self.window)), **self.parts,
               **validate(kept, self.data.val, self.data.loss_fn, self.device, cfg.batch_size, cfg.loss_scale)}
        self.window = []
        self.history.append(row)
        logger.info("step %d/%d: loss %.4f val mIoU %.4f lr %.2e", self.step, self.total, row["train_loss"],
                    row["miou"], self.lr)
        if row["miou"] > self.best["miou"]:
            self.best = {"miou": row["miou"], "epoch": row["epoch"], "step": self.step}
            save_student(kept, self.out, cfg.image_size, **self.extra, best=self.best)
        self.model.train()
        if planner is not None and not done:
            self.total = planner.validation_done(self.step)
            self.warmup, self.next_val = min(self.warmup, max(1, self.total // 5)), self.step + planner.val_interval()
            self.bar.total = self.total
            logger.info("re-planned: %d steps, next validation at %d", self.total, self.next_val)
        else:
            self.next_val = (self.step // self.val_interval + 1) * self.val_interval
        return f"{row['miou']:.3f}"

    def checkpoint(self) -> None:
        """Save ``last.*`` and the state a resumed run continues from."""
        save_student(self.model, self.out, self.cfg.image_size, name="last", **self.extra)
        save_state(self.out, {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                              "rng": torch.get_rng_state(), "step": self.step, "history": json.dumps(self.history),
                              "best": json.dumps(self.best), "total": self.total or 0, "warmup": self.warmup,
                              "val_interval": self.val_interval if self.planner is None
                              else max(1, self.next_val - self.step),
                              **({"ema": self.ema.state_dict()} if self.ema is not None else {})})

    def finish(self, stats: dict[str, float], started: float, test: dict[str, Any] | None) -> TrainResult:
        """Write ``history.json`` and ``training_curve.png`` (with the test score, when there is one); the result."""
        atomic_write_text(self.out / "history.json", json.dumps(self.history, indent=2))
        if self.history:
            plot_history(self.history, self.out / "training_curve.png", test)
        return TrainResult(self.out, self.best["miou"], self.best["epoch"], self.step, self.history, self.stopped_early,
                           self.total or self.step, self.lr, stats, time.monotonic() - started, test)


def _pick_threads(model: Student, data: CachedSet, loss_fn: SegmentationLoss, cfg: TrainConfig) -> int:
    """On a CPU, time forward + backward passes of a real batch with one thread and with torch's threads; keep
    the faster (on a CPU shared with other work, OpenMP threads that wait on each other were measured 4.5x
    slower than one: 24.6 s against 5.4 s). Under a load average above the core count, one thread without
    probing. The weights and BatchNorm statistics are restored afterwards."""
    many = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load >= (os.cpu_count() or 1):
        torch.set_num_threads(1)
        logger.info("CPU threads: load average %.1f on %d cores -> training with 1", load, os.cpu_count())
        return 1
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    items = [data[i][:2] for i in range(min(cfg.batch_size, len(data)))]
    pixels, target = torch.stack([p for p, _ in items]), torch.stack([t for _, t in items])
    seconds: dict[int, float] = {}
    model.train()
    for threads, passes in ((1, 2), (many, 2)):
        torch.set_num_threads(threads)
        times: list[float] = []
        for _ in range(passes):
            start = time.perf_counter()
            logits, labels = at_loss_scale(model(pixels, full_size=False).float(), target, cfg.loss_scale)
            loss_fn(logits, labels, model.config.num_classes)[0].backward()
            times.append(time.perf_counter() - start)
            if threads > 1 and times[-1] > 1.5 * seconds[1]:
                break  # clearly slower: no second pass
        seconds[threads] = min(times)
    model.zero_grad(set_to_none=True)
    model.load_state_dict(saved)
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    logger.info("CPU threads: %s s per forward + backward -> training with %d", seconds, best)
    return best


def _plan(cfg: TrainConfig, steps_per_epoch: int, started: float, validation_steps: float
          ) -> tuple[int | None, BudgetPlanner | None]:
    """(total steps, or None with the planner that will fix them; its clock starts with ``train``)."""
    if cfg.total_steps:
        return cfg.total_steps, None
    if cfg.epochs:
        return cfg.epochs * steps_per_epoch, None
    if cfg.budget_minutes is None and cfg.max_steps:
        return cfg.max_steps, None
    planner = BudgetPlanner(60 * (cfg.budget_minutes or DEFAULT_BUDGET_MINUTES), validation_steps=validation_steps)
    planner.start = planner._last = planner._val_start = started  # the cache and the model build count too
    return None, planner
