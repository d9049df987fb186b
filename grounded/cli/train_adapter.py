"""``grounded train-adapter IMAGES_DIR --ontology ONT --out ADAPTER``: teach SAM to take CLIP text prompts.

The pipeline (Grounding DINO + box-prompted SAM) labels the images; a small adapter learns to turn CLIP text
embeddings into SAM prompt tokens so that text-prompted (and box + text-prompted) masks match those box
masks. SAM and CLIP stay frozen. Run the same command again to resume an interrupted run.
Then: ``grounded segment photo.jpg "wheel" --adapter ADAPTER --text-tokens`` (or ``--text-only``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grounded.cli.common import add_model_arguments, predictor_from_args
from grounded.clip.config import AdapterConfig, AdapterTrainConfig
from grounded.errors import InputError

EXAMPLES = """examples:
  grounded train-adapter photos/ --ontology prompts/car_parts.yaml --out adapters/car_parts
  grounded train-adapter photos/ --classes "car, wheel" --out adapters/cars --clip ./clip-vit-base-patch32 --offline
  grounded train-adapter photos/ --classes "dog" --out a/ --steps 2000 --tokens 8 --lr 5e-4

writes OUT/adapter.safetensors + OUT/adapter.json (the SAM and CLIP it is for, IoU with the teacher before
and after), OUT/history.json; OUT/last.* + OUT/train_state.pt while training (to resume)."""


def register(sub: argparse._SubParsersAction) -> None:
    t, a = AdapterTrainConfig(), AdapterConfig(clip_dim=1, sam_dim=1)
    p = sub.add_parser("train-adapter", help="train a CLIP text -> SAM prompt adapter against the pipeline's masks",
                       description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of images, searched recursively")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--ontology", type=Path, help="YAML ontology: classes with synonyms (see prompts/)")
    what.add_argument("--classes", help='comma-separated class names, e.g. "car, wheel"')
    p.add_argument("--out", type=Path, required=True, help="adapter folder (created; resumed if it holds this run)")
    p.add_argument("--clip", default=None, help="CLIP name, folder or open_clip:ARCH[@PRETRAINED] "
                                                "(default: openai/clip-vit-base-patch32)")
    train = p.add_argument_group("training")
    train.add_argument("--steps", type=int, default=t.steps, help="optimisation steps (default %(default)s)")
    train.add_argument("--batch-size", type=int, default=t.batch_size, help="images per step (default %(default)s)")
    train.add_argument("--lr", type=float, default=t.lr, help="peak AdamW learning rate (default %(default)s)")
    train.add_argument("--warmup", type=int, default=t.warmup, help="warm-up steps (default %(default)s)")
    train.add_argument("--tokens", type=int, default=a.num_tokens, help="prompt tokens per text (default %(default)s)")
    train.add_argument("--hidden", type=int, default=a.hidden_dim, help="adapter MLP width (default %(default)s)")
    train.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every, help="default %(default)s")
    train.add_argument("--max-image-side", type=int, default=None, help="downscale images for the teacher "
                                                                         "(default: SAM's input size)")
    train.add_argument("--seed", type=int, default=t.seed, help="initialisation and batch order (default %(default)s)")
    train.add_argument("--stop-after", type=int, default=None, help="stop after N steps this run (resume later)")
    train.add_argument("--force", action="store_true", help="start over if OUT holds a run with other settings")
    add_model_arguments(p, clip_options=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from grounded.clip.encoders import load_clip
    from grounded.clip.train import train_adapter
    from grounded.ontology import Ontology

    ontology = Ontology.from_yaml(args.ontology) if args.ontology else Ontology.from_classes(args.classes)
    if not args.images.is_dir():
        raise InputError(f"IMAGES_DIR {str(args.images)!r} is not a folder")
    config = AdapterTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                                checkpoint_every=args.checkpoint_every, seed=args.seed,
                                max_image_side=args.max_image_side)
    predictor = predictor_from_args(args)
    if predictor.segmenter is None or "text_tokens" in predictor.segmenter.refused_options:
        raise InputError("an adapter gives text tokens to a SAM-style segmenter: train it with a SAM --segmenter "
                         "(not --model, and not a segmenter that takes no sparse prompt tokens)")
    clip = load_clip(args.clip, predictor.device, local_files_only=args.local_files_only)
    sam_dim = int(predictor.segmenter.model.config.prompt_encoder_config.hidden_size)
    adapter_config = AdapterConfig(clip_dim=clip.dim, sam_dim=sam_dim, num_tokens=args.tokens, hidden_dim=args.hidden)
    result = train_adapter(args.images, ontology, predictor, clip, args.out, config, adapter_config,
                           stop_after=args.stop_after, force=args.force)
    if not result.finished:
        print(f"stopped at step {result.steps} of {config.steps}; run the same command again to resume")
        return 0
    losses = [h["loss"] for h in result.history]
    print(f"adapter: {args.out / 'adapter.safetensors'} ({result.steps} steps, {result.images_used} images with "
          f"detections, {result.images_skipped} without)")
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; mean IoU with the teacher's masks: text only "
          f"{result.before['iou_text']:.3f} -> {result.after['iou_text']:.3f}, box + text "
          f"{result.before['iou_box_text']:.3f} -> {result.after['iou_box_text']:.3f}")
    return 0
