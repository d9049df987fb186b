"""Training a student: ``train(dataset, out, StudentConfig(...), TrainConfig(...)) -> TrainResult``.

What it does, in order:

1. opens the dataset (:func:`grounded.distill.data.open_dataset`; split by seed when it has no validation);
2. seeds torch and builds the student (pretrained weights when named; random otherwise);
3. counts label pixels on (a sample of) the training split for class-weighted cross-entropy;
4. trains with AdamW, linear warm-up then cosine decay over ``epochs`` or ``total_steps`` (``max_steps`` / ``max_minutes``
   stop early without changing the schedule), autocast where the device supports it (float16 + grad
   scaling on CUDA; ``amp="bf16"`` opts in on CPU), a tqdm bar showing loss, learning rate and val mIoU;
5. validates every ``val_every`` epochs on letterboxed validation images (mIoU, pixel accuracy, loss) and
   keeps the best student by mIoU as ``student.safetensors`` + ``student.json``;
6. saves ``last.*`` + ``train_state.pt`` at every epoch end (and every ``checkpoint_every`` steps), so an
   interrupted run resumes where it stopped: calling ``train`` again on the same ``out`` continues it;
7. writes ``history.json`` and ``training_curve.png``.

Determinism: given ``seed``, the initial weights, the data order (one permutation per epoch, from
``(seed, epoch)``) and the augmentations (per sample, from ``(seed, epoch, index)``) are fixed; the global torch
RNG (dropout, drop-path) is saved in ``train_state.pt``. With ``num_workers=0`` on CPU, an interrupted and
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from grounded.distill.augment import TrainSet
from grounded.distill.checkpoint import load_student, read_record, save_student
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import DataSplits, open_dataset
from grounded.distill.losses import SegmentationLoss, class_weights, pixel_counts
from grounded.distill.metrics import confusion_matrix, semantic_scores
from grounded.distill.predictor import pick_device
from grounded.distill.students import Student, build_student
from grounded.errors import InputError

logger = logging.getLogger(__name__)

# TrainConfig fields a resumed run takes from the new call (they do not change what is trained).
RUN_CONTROL = ("max_minutes", "max_steps", "checkpoint_every", "num_workers", "device")


@dataclass
class TrainResult:
    out: Path
    best_miou: float
    best_epoch: int
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a seeded permutation cut into full batches (a ragged last batch is dropped)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    size = min(batch_size, n)
    return [order[i : i + size] for i in range(0, n - size + 1, size)]


@torch.no_grad()
def validate(student: Student, data: TrainSet, loss_fn: SegmentationLoss, device: torch.device, batch_size: int) -> dict[str, Any]:
    """Loss and semantic scores of ``student`` on letterboxed validation items."""
    student.eval()
    num_classes = student.config.num_classes
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    losses = []
    for pixels, target in DataLoader(data, batch_size=batch_size, shuffle=False):
        logits = student(pixels.to(device)).float()
        losses.append(float(loss_fn(logits, target.to(device))[0]))
        confusion += confusion_matrix(logits.argmax(1).cpu().numpy(), target.numpy(), num_classes)
    scores = semantic_scores(confusion, student.config.class_names)
    return {"val_loss": float(np.mean(losses)) if losses else float("nan"), "miou": scores["miou"],
            "pixel_accuracy": scores["pixel_accuracy"]}


def _autocast(device: torch.device, amp: str):  # noqa: ANN202
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if amp == "auto" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def _start(out: Path, splits: DataSplits, student_cfg: StudentConfig, cfg: TrainConfig, resume: bool):  # noqa: ANN202
    """(student, training state or None, config): fresh, or the last saved student, its state and config."""
    state_path = out / "train_state.pt"
    if resume and state_path.is_file():
        record, _ = read_record(out / "last.json")
        if record["student"]["class_names"] != splits.class_names:
            raise InputError(f"{out} holds a run on other classes; pass a new --out or --no-resume")
        saved = TrainConfig.from_dict(record["train"])
        for name in RUN_CONTROL:  # how long and where to run may change; what is trained may not
            setattr(saved, name, getattr(cfg, name))
        if saved != cfg:
            logger.warning("resuming %s with its saved training config (the one given differs)", out)
        student, _ = load_student(out / "last.safetensors")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        return student, state, saved
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
) -> TrainResult:
    """Train (or resume training) a student on ``dataset`` into the run folder ``out``; see the module docstring."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or TrainConfig()
    splits = dataset if isinstance(dataset, DataSplits) else open_dataset(dataset, cfg.val_fraction, cfg.seed)
    model, state, cfg = _start(out, splits, student or StudentConfig(), cfg, resume)
    device = pick_device(cfg.device)
    model.to(device)

    counts = np.asarray(state["pixel_counts"]) if state else pixel_counts(splits.train, model.config.num_classes, seed=cfg.seed)
    weight = torch.from_numpy(class_weights(counts)).to(device) if cfg.class_weights else None
    loss_fn = SegmentationLoss(weight, cfg.dice_weight, cfg.focal_weight, cfg.focal_gamma).to(device)
    train_set = TrainSet(splits.train, cfg.image_size, cfg.augment, cfg.seed)
    val_set = TrainSet(splits.val, cfg.image_size, None, cfg.seed)
    steps_per_epoch = len(epoch_batches(len(train_set), cfg.batch_size, cfg.seed, 0))
    total = cfg.total_steps or cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_steps, max(1, total // 5))  # short runs: at most a fifth of the steps

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup, total, cfg.min_lr_ratio)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "auto" and device.type == "cuda")
    step, history, best = 0, [], {"miou": -1.0, "epoch": -1}
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        step, history, best = int(state["step"]), json.loads(state["history"]), json.loads(state["best"])
        logger.info("resuming %s at step %d of %d", out, step, total)
    extra = {"train": cfg.to_dict(), "data": splits.info, "val_images": len(splits.val)}

    def save_state() -> None:
        save_student(model, out, cfg.image_size, name="last", **extra)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "rng": torch.get_rng_state(), "step": step, "history": json.dumps(history), "best": json.dumps(best),
                    "pixel_counts": torch.from_numpy(counts)}, out / "train_state.tmp")
        (out / "train_state.tmp").replace(out / "train_state.pt")

    started, stopped_early = time.monotonic(), False
    bar = tqdm(total=total, initial=step, desc=f"train {model.config.arch}", disable=not progress, dynamic_ncols=True)
    postfix: dict[str, str] = {}
    while step < total and not stopped_early:
        epoch, skip = divmod(step, steps_per_epoch)
        train_set.set_epoch(epoch)
        batches = epoch_batches(len(train_set), cfg.batch_size, cfg.seed, epoch)[skip:]
        model.train()
        epoch_losses: list[float] = []
        for pixels, target in DataLoader(train_set, batch_sampler=batches, num_workers=cfg.num_workers):
            pixels, target = pixels.to(device, non_blocking=True), target.to(device, non_blocking=True)
            with _autocast(device, cfg.amp):
                logits = model(pixels)
            loss, parts = loss_fn(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            postfix.update(loss=f"{float(loss.detach()):.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            out_of_time = cfg.max_minutes is not None and time.monotonic() - started > 60 * cfg.max_minutes
            epoch_losses.append(float(loss.detach()))
            if step >= total:
                break
            if (cfg.max_steps is not None and step >= cfg.max_steps) or out_of_time:
                stopped_early = True
                break
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step % steps_per_epoch:
                save_state()
        if step % steps_per_epoch == 0 or stopped_early or step >= total:
            finished_epoch = (step - 1) // steps_per_epoch
            if (finished_epoch + 1) % cfg.val_every == 0 or stopped_early or step >= total:
                row = {"epoch": finished_epoch, "step": step, "train_loss": float(np.mean(epoch_losses)), **parts,
                       **validate(model, val_set, loss_fn, device, cfg.batch_size)}
                history.append(row)
                postfix["val_mIoU"] = f"{row['miou']:.3f}"
                logger.info("epoch %d step %d: loss %.4f val mIoU %.4f", finished_epoch, step, row["train_loss"], row["miou"])
                if row["miou"] > best["miou"]:
                    best = {"miou": row["miou"], "epoch": finished_epoch, "step": step}
                    save_student(model, out, cfg.image_size, **extra, best=best)
            save_state()
    bar.close()
    (out / "history.json").write_text(json.dumps(history, indent=2))
    if history:
        plot_history(history, out / "training_curve.png")
    return TrainResult(out, best["miou"], best["epoch"], step, history, stopped_early)


def plot_history(history: list[dict[str, Any]], path: Path) -> Path:
    """Training and validation loss, and validation mIoU, against optimiser steps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(steps, [h["train_loss"] for h in history], marker="o", label="train loss (epoch mean)")
    left.plot(steps, [h["val_loss"] for h in history], marker="o", label="val loss")
    left.set_xlabel("step")
    left.legend()
    right.plot(steps, [h["miou"] for h in history], marker="o", color="tab:green", label="val mIoU")
    right.plot(steps, [h["pixel_accuracy"] for h in history], marker="o", color="tab:gray", label="val pixel acc")
    right.set_xlabel("step")
    right.set_ylim(0, 1)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
