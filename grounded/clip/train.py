"""Training a :class:`~grounded.clip.adapter.TextPromptAdapter` against the pipeline's own masks.

``train_adapter(images, ontology, predictor, clip, out) -> AdapterTrainResult``; CLI ``grounded train-adapter``.

1. **Teacher** (once per run, :func:`build_teacher`). Each image is downscaled so its long side is at most
   SAM's input size (SAM sees no more anyway), the pipeline runs on it (``predictor.segment_encoded``, box
   prompts only) and for its detections SAM's low-resolution box-prompted mask logits are kept:
   ``box_targets`` (N, 4h, 4w), one per detection, and ``text_targets`` (Q, 4h, 4w), one per distinct phrase,
   the union (pixel-wise max of logits) of that phrase's detections. Images without detections are skipped.
2. **Student.** SAM and CLIP stay frozen. For each image of a batch: the adapter turns the CLIP embeddings
   of its phrases into tokens; :func:`grounded.clip.decoding.decode_tokens` predicts (a) box + text masks for
   every detection and (b) text-only masks for every phrase (the same function inference uses).
3. **Loss** (as SAM): ``20 * focal + 1 * dice`` per mask, each pixel weighted by the teacher's confidence
   ``|2 sigmoid(l) - 1|`` divided by its maximum over the mask (unsure pixels, e.g. along edges, count little;
   a low-contrast teacher still trains) and by 0 in SAM's padding. Box + text and text-only losses are
   averaged with ``box_text_weight`` / ``text_only_weight``.
4. **Optimisation.** AdamW, linear warm-up then cosine decay over ``steps``; batches are a seeded permutation
   per epoch. ``last.safetensors`` + ``last.json`` and ``train_state.pt`` (optimizer, step, history; tensors and
   plain data only, read back with ``weights_only=True``: :mod:`grounded.formats.checkpoint`) are written
   atomically every ``checkpoint_every`` steps; calling again on the same ``out`` resumes and ends with the weights of an
   uninterrupted run (tested). The finished adapter is ``out/adapter.safetensors`` + ``adapter.json``
   (SAM/CLIP identities, training config, IoU with the teacher before and after); ``history.json`` has the
   per-step loss.

Mean IoU with the teacher (binary masks at logit 0, inside the image) is measured on the training images
before and after training; there is no held-out split: it shows the adapter learned, not that it generalises.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from grounded.clip.adapter import TextPromptAdapter
from grounded.clip.config import AdapterConfig, AdapterTrainConfig
from grounded.clip.decoding import decode_tokens, pick_best
from grounded.clip.encoders import ClipEncoder
from grounded.clip.runtime import sam_identity
from grounded.errors import InputError
from grounded.formats.checkpoint import load_state, load_weights, save_state
from grounded.models.backends.sam import boxes_to_sam_frame
from grounded.ontology import Ontology
from grounded.utils.images import find_images, load_image
from grounded.utils.schedule import warmup_cosine

logger = logging.getLogger(__name__)


@dataclass
class TeacherImage:
    """One image's frozen inputs and targets (shapes in the module docstring; boxes XYXY in SAM's frame)."""

    embedding: torch.Tensor  # (1, C, h, w)
    boxes: torch.Tensor  # (N, 4)
    box_phrases: list[str]  # (N) detected phrase of each box
    box_targets: torch.Tensor  # (N, 4h, 4w) teacher logits
    text_phrases: list[str]  # (Q) distinct phrases
    text_targets: torch.Tensor  # (Q, 4h, 4w) union of each phrase's teacher logits
    valid: torch.Tensor  # (4h, 4w) bool, the image inside SAM's padded frame


@dataclass
class AdapterTrainResult:
    out: Path
    steps: int
    images_used: int
    images_skipped: int
    before: dict[str, float] = field(default_factory=dict)  # mean IoU with the teacher before training
    after: dict[str, float] = field(default_factory=dict)  # ... after (empty until the run finishes)
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def build_teacher(predictor, paths: Sequence[Path], ontology: Ontology, max_side: int | None = None) -> list[TeacherImage]:
    """Run the pipeline (box prompts only) on each image and keep SAM's low-resolution logits as targets."""
    seg = predictor.segmenter
    max_side = max_side or seg.longest_edge
    items = []
    for path in tqdm(paths, desc="teacher", unit="img", disable=len(paths) < 4):
        image = _downscale(load_image(path), max_side)
        hw = image.shape[:2]
        encoding = predictor.encode([image])
        found = predictor.segment_encoded(encoding, ontology, text_tokens=False, verify=None)[0]
        if len(found) == 0:
            continue
        embedding = seg.embedding(encoding.segmenter, 0)
        logits, _ = pick_best(*seg.decode(encoding.segmenter, 0, found.xyxy, predictor.options.multimask))
        phrases = [str(p) for p in found.data["phrase"]]
        distinct = list(dict.fromkeys(phrases))
        union = torch.stack([logits[[k for k, p in enumerate(phrases) if p == q]].amax(dim=0) for q in distinct])
        rh, rw = encoding.segmenter.reshaped_sizes[0]
        size = logits.shape[-1]
        valid = torch.zeros(logits.shape[-2:], dtype=torch.bool)
        valid[: math.ceil(rh / seg.longest_edge * size), : math.ceil(rw / seg.longest_edge * size)] = True
        boxes = torch.as_tensor(boxes_to_sam_frame(found.xyxy, hw, seg.longest_edge), dtype=torch.float32)
        items.append(TeacherImage(embedding.detach().clone(), boxes, phrases, logits.detach().clone(), distinct,
                                  union.detach().clone(), valid))
    logger.info("teacher: %d of %d images have detections", len(items), len(paths))
    return items


def focal_dice_loss(logits: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor,
                    config: AdapterTrainConfig) -> torch.Tensor:
    """Student and teacher logits (M, H, W), valid (H, W) -> scalar ``20 * focal + dice`` (module docstring)."""
    target = (teacher > 0).float()
    weight = (2 * torch.sigmoid(teacher) - 1).abs() * valid
    weight = weight / weight.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    denom = weight.sum(dim=(1, 2)).clamp_min(1e-6)
    prob = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = config.focal_alpha * target + (1 - config.focal_alpha) * (1 - target)
    focal = (alpha_t * (1 - p_t) ** config.focal_gamma * ce * weight).sum(dim=(1, 2)) / denom
    inter = (prob * target * weight).sum(dim=(1, 2))
    dice = 1 - (2 * inter + 1e-3) / ((prob * weight).sum(dim=(1, 2)) + (target * weight).sum(dim=(1, 2)) + 1e-3)
    return (config.focal_weight * focal + config.dice_weight * dice).mean()


def student_logits(adapter: TextPromptAdapter, sam_model: torch.nn.Module, item: TeacherImage,
                   text_embeddings: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> box + text logits (N, 4h, 4w) and text-only logits (Q, 4h, 4w) for one teacher image."""
    device = next(adapter.parameters()).device
    tokens = adapter(torch.stack([text_embeddings[p] for p in item.text_phrases]).to(device))  # (Q, k, C)
    index = torch.tensor([item.text_phrases.index(p) for p in item.box_phrases], device=device)
    box_text, _ = decode_tokens(sam_model, item.embedding, item.boxes.to(device), tokens[index])
    text_only, _ = decode_tokens(sam_model, item.embedding, None, tokens)
    return box_text[:, 0].float(), text_only[:, 0].float()


def _iou(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> list[float]:
    a, b = (student > 0) & valid, (teacher > 0) & valid
    inter, union = (a & b).flatten(1).sum(1).float(), (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter)).tolist()


@torch.no_grad()
def evaluate(adapter: TextPromptAdapter, sam_model: torch.nn.Module, items: Sequence[TeacherImage],
             text_embeddings: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean IoU with the teacher's masks: ``iou_text`` (text alone), ``iou_box_text`` (box + text)."""
    text, box = [], []
    for item in items:
        box_text, text_only = student_logits(adapter, sam_model, item, text_embeddings)
        box += _iou(box_text.cpu(), item.box_targets, item.valid)
        text += _iou(text_only.cpu(), item.text_targets, item.valid)
    return {"iou_text": float(np.mean(text)) if text else 0.0, "iou_box_text": float(np.mean(box)) if box else 0.0}


def lr_at(step: int, config: AdapterTrainConfig) -> float:
    """Learning rate of ``step``: linear warm-up, then cosine from ``lr`` to ``lr * min_lr_ratio``."""
    return config.lr * warmup_cosine(step, config.warmup, config.steps, config.min_lr_ratio)


def batch_at(step: int, n: int, config: AdapterTrainConfig) -> list[int]:
    """Item indices of ``step``: epoch-wise seeded permutations cut into full batches."""
    size = min(config.batch_size, n)
    per_epoch = n // size
    epoch, pos = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)).tolist()
    return order[pos * size : (pos + 1) * size]


def train_adapter(images: str | Path | Sequence[str | Path], ontology: Ontology, predictor, clip: ClipEncoder,
                  out: str | Path, config: AdapterTrainConfig | None = None,
                  adapter_config: AdapterConfig | None = None, stop_after: int | None = None,
                  force: bool = False) -> AdapterTrainResult:
    """Train (or resume) an adapter in ``out``; see the module docstring. ``stop_after``: stop this call after
    that many steps (the schedule is unchanged; call again to resume). ``force``: start over in ``out``."""
    config = config or AdapterTrainConfig()
    out = Path(out)
    paths = find_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise InputError(f"no images found in {str(images)!r}; give a folder of .jpg/.png/... files")
    sam_model = predictor.segmenter.model.eval().requires_grad_(False)
    sam_id, clip_id = sam_identity(predictor.segmenter), clip.identity()
    adapter_config = adapter_config or AdapterConfig(clip_dim=clip.dim,
                                                     sam_dim=int(sam_model.config.prompt_encoder_config.hidden_size))
    run = {"images": [str(p) for p in paths], "ontology": ontology.to_dict(), "train": asdict(config),
           "adapter": asdict(adapter_config), "sam": sam_id["arch"], "clip": clip_id["arch"],
           "teacher": predictor.describe()}
    run = json.loads(json.dumps(run, default=str))
    state = None if force else load_state(out)  # tensors and plain data, read with weights_only=True
    if state is not None and state["run"] != run:
        changed = sorted(k for k in run if state["run"].get(k) != run[k])
        raise InputError(f"{out} holds an adapter run with other settings ({', '.join(changed)}); "
                         f"pass --force to start over there, or another --out")
    torch.manual_seed(config.seed)
    adapter = TextPromptAdapter(adapter_config, sam=sam_id, clip=clip_id).to(predictor.segmenter.device)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    items = build_teacher(predictor, paths, ontology, config.max_image_side)
    if not items:
        raise InputError(f"the pipeline found nothing of {ontology.class_names} in the {len(paths)} image(s): "
                         f"no teacher masks to learn from; lower --box-threshold or check the ontology")
    phrases = sorted({p for item in items for p in item.text_phrases})
    text_embeddings = dict(zip(phrases, clip.encode_texts(phrases), strict=True))
    result = AdapterTrainResult(out, 0, len(items), len(paths) - len(items))
    if state is not None:
        load_weights(adapter, out / "last.safetensors", "text-prompt adapter")
        optimizer.load_state_dict(state["optimizer"])
        result.steps, result.history, result.before = state["step"], state["history"], state["before"]
        logger.info("resuming %s at step %d of %d", out, result.steps, config.steps)
    else:
        result.before = evaluate(adapter, sam_model, items, text_embeddings)

    def checkpoint() -> None:
        adapter.save(out, "last", step=result.steps)  # the project's checkpoint format, then the state beside it
        save_state(out, {"run": run, "step": result.steps, "optimizer": optimizer.state_dict(),
                         "history": result.history, "before": result.before})

    done_now = 0
    bar = tqdm(total=config.steps, initial=result.steps, desc="train-adapter", unit="step")
    while result.steps < config.steps and (stop_after is None or done_now < stop_after):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(result.steps, config)
        losses = []
        for k in batch_at(result.steps, len(items), config):
            item = items[k]
            box_text, text_only = student_logits(adapter, sam_model, item, text_embeddings)
            valid = item.valid.to(box_text.device)
            losses.append(config.box_text_weight * focal_dice_loss(box_text, item.box_targets.to(box_text.device), valid, config)
                          + config.text_only_weight * focal_dice_loss(text_only, item.text_targets.to(box_text.device), valid, config))
        loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        result.steps += 1
        done_now += 1
        result.history.append({"step": result.steps, "loss": loss.item(), "lr": lr_at(result.steps - 1, config)})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if result.steps % config.checkpoint_every == 0 or result.steps == config.steps:
            checkpoint()
    bar.close()
    if result.steps % config.checkpoint_every != 0 and result.steps != config.steps:
        checkpoint()  # stopped early: keep the state to resume from
    if result.steps == config.steps:
        result.after = evaluate(adapter, sam_model, items, text_embeddings)
        result.finished = True
        adapter.save(out, "adapter", training={"config": asdict(config), "steps": result.steps,
                                               "images_used": result.images_used, "images_skipped": result.images_skipped,
                                               "ontology": ontology.to_dict(), "teacher": run["teacher"],
                                               "iou_before": result.before, "iou_after": result.after})
        from grounded.formats.files import atomic_write_text

        atomic_write_text(out / "history.json", json.dumps(result.history))
        logger.info("adapter saved to %s: IoU with the teacher %s -> %s", out, result.before, result.after)
    return result
