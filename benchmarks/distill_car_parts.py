"""Benchmark: distil students on Car Parts Segmentation (ground-truth masks stand in for teacher labels).

On ``../shared/data/car_parts/train`` (400 photos, 18 part classes) with a seeded 80/20 split, train each
student on the CPU within a time budget, then print per-class IoU, mIoU, wheel IoU, mask AP (pycocotools,
segm) on the 80 validation images at their own 512 x 512 resolution, the student's images/second (the full
``predict`` path: resize, forward, upsample, instances; torch and ONNX Runtime), and its speed ratio
against the full-size teacher on the same image size.

Students: a U-Net from scratch (``--unet-size``, default small) and SegFormer-b0 from random initialisation
(no weights can be downloaded here; from ``nvidia/mit-b0`` it would do much better).

Schedule: a few training steps are timed first, and the cosine schedule is sized to fill the budget
(``--minutes-per-student``, default 30, the issue's); training also stops at the budget whatever happens.

Teacher cost: the full-size Grounding DINO (Swin-T + BERT, ``GroundingDinoConfig()``) and SAM ViT-B
(``SamConfig()``) with random weights (they cost the same time as real ones): one Grounding DINO forward at
800 x 800 (its processor's size for a 512 x 512 photo) with the 18-class caption, SAM's image encoder at
1024 and its mask decoder for 8 boxes (about the mean number of parts per image). These are the bare model
forwards: the pipeline's pre- and post-processing is not counted, which flatters the teacher slightly.

Threads: on a CPU shared with other work, torch's OpenMP threads oversubscribe the cores and slow down
badly (measured here under load: U-Net step 11.6 s with 2 threads, 3.5 s with 1); use ``--threads 1`` there.

Run:  python benchmarks/distill_car_parts.py --minutes-per-student 30 --threads 2 --out /tmp/distill_bench
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from grounded.distill.augment import TrainSet
from grounded.distill.checkpoint import load_student
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import open_dataset
from grounded.distill.evaluate import format_table
from grounded.distill.losses import SegmentationLoss
from grounded.distill.predictor import StudentPredictor
from grounded.distill.students import build_student
from grounded.distill.train import epoch_batches
from grounded.distill.workflow import default_lr, evaluate_run, train_run

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def calibrate(student_cfg: StudentConfig, cfg: TrainConfig, train_set: TrainSet, n_val: int) -> tuple[float, float]:
    """(seconds per training step, seconds to validate once), measured on real batches."""
    student_cfg = StudentConfig.from_dict({**student_cfg.to_dict(), "class_names": train_set.view.class_names})
    model = build_student(student_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss()
    batch = [train_set[i] for i in range(cfg.batch_size)]
    pixels, target = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        batch = [train_set[i] for i in range(cfg.batch_size)]  # data loading counts too
        loss, _ = loss_fn(model(pixels), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        model(pixels)
        forward = time.perf_counter() - start
    return statistics.median(times[1:]), forward * n_val / cfg.batch_size


def student_speed(model_path: Path, images: list, threads: int) -> float:
    """Images per second of the whole predict path."""
    predictor = StudentPredictor.load(model_path, device="cpu", threads=threads)
    predictor.predict(images[0])
    start = time.perf_counter()
    for image in images:
        predictor.predict(image)
    return len(images) / (time.perf_counter() - start)


def teacher_seconds(class_names: list[str], boxes: int = 8) -> dict[str, float]:
    """Median seconds of the full-size teacher's forwards (see the module docstring)."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, SamConfig, SamModel

    vocab = DATA / "vocab" / "bert-base-uncased-vocab.txt"
    caption = " . ".join(n.replace("_", " ") for n in class_names) + " ."
    if vocab.is_file():
        from transformers import BertTokenizer

        ids = BertTokenizer(vocab=str(vocab))(caption, return_tensors="pt")["input_ids"]
    else:
        ids = torch.randint(1000, 2000, (1, 64))
    torch.manual_seed(0)
    dino = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    sam = SamModel(SamConfig()).eval()
    pixels = torch.rand(1, 3, 800, 800)
    sam_pixels = torch.rand(1, 3, 1024, 1024)
    box = torch.tensor([[[100.0, 100.0, 600.0, 500.0]] * boxes])
    out: dict[str, list[float]] = {"grounding_dino": [], "sam_encoder": [], "sam_decoder": []}
    with torch.inference_mode():
        for run in range(3):  # the first run warms up and is not counted
            t0 = time.perf_counter()
            dino(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))
            t1 = time.perf_counter()
            embeddings = sam.get_image_embeddings(sam_pixels)
            t2 = time.perf_counter()
            sam(image_embeddings=embeddings, input_boxes=box, multimask_output=False)
            t3 = time.perf_counter()
            if run:
                out["grounding_dino"].append(t1 - t0)
                out["sam_encoder"].append(t2 - t1)
                out["sam_decoder"].append(t3 - t2)
    seconds = {k: statistics.median(v) for k, v in out.items()}
    seconds["total"] = sum(seconds.values())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "car_parts" / "train")
    parser.add_argument("--out", type=Path, default=Path("/tmp/distill_bench"))
    parser.add_argument("--minutes-per-student", type=float, default=30.0)
    parser.add_argument("--students", default="unet,segformer", help="comma-separated: unet, segformer")
    parser.add_argument("--unet-size", default="small")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-images", type=int, default=20)
    parser.add_argument("--skip-teacher", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/data/car_parts/train")

    splits = open_dataset(args.data, 0.2, seed=0)
    print(f"data: {args.data} -> {len(splits.train)} train / {len(splits.val)} val images, {len(splits.class_names)} classes")
    speed_images = [splits.val.image(i) for i in range(min(args.speed_images, len(splits.val)))]
    results = {}
    for name in args.students.split(","):
        student = StudentConfig(arch=name, size=args.unet_size if name == "unet" else "b0")
        cfg = TrainConfig(image_size=args.image_size, batch_size=args.batch_size, lr=default_lr(student), seed=0,
                          max_minutes=args.minutes_per_student)
        train_set = TrainSet(splits.train, cfg.image_size, cfg.augment, cfg.seed)
        step_s, val_s = calibrate(student, cfg, train_set, len(splits.val))
        steps_per_epoch = len(epoch_batches(len(splits.train), cfg.batch_size, 0, 0))
        budget = 60 * args.minutes_per_student * 0.92  # leave room for the checkpoints
        epochs = max(1, int(budget / (steps_per_epoch * step_s + val_s)))
        total = int((budget - min(epochs, 6) * val_s) / step_s)
        cfg.total_steps, cfg.epochs, cfg.val_every = total, max(1, -(-total // steps_per_epoch)), max(1, epochs // 6)
        print(f"\n== {name}: {step_s:.2f} s/step, {val_s:.0f} s/validation -> {total} steps "
              f"({total / steps_per_epoch:.1f} epochs) of batch {cfg.batch_size} at {cfg.image_size} px")
        run = args.out / name
        start = time.perf_counter()
        summary = train_run(splits, run, student, cfg, resume=False, export=True, progress=False)
        minutes = (time.perf_counter() - start) / 60
        metrics, _ = evaluate_run(run, data=args.data, progress=False)
        print(format_table(metrics))
        torch_ips = student_speed(run, speed_images, args.threads)
        onnx_ips = student_speed(run / "student.onnx", speed_images, args.threads)
        params = sum(p.numel() for p in load_student(run)[0].parameters())
        results[name] = {"train_minutes": round(minutes, 2), "steps": summary["steps"], "miou": metrics["miou"],
                         "wheel_iou": metrics["per_class_iou"].get("wheel"), "mask_ap": metrics["mask_ap"],
                         "mask_ap50": metrics["mask_ap50"], "pixel_accuracy": metrics["pixel_accuracy"],
                         "images_per_s_torch": torch_ips, "images_per_s_onnx": onnx_ips, "params": params}
        print(f"{params / 1e6:.2f} M parameters; trained {minutes:.1f} min, {summary['steps']} steps; CPU speed: {torch_ips:.2f} img/s torch, "
              f"{onnx_ips:.2f} img/s onnxruntime ({args.threads} thread(s), 512x512 photos)")

    teacher = None if args.skip_teacher else teacher_seconds(splits.class_names)
    print("\n== summary (validation: 80 images, 512 x 512)")
    if teacher:
        print(f"teacher (random full-size weights, bare forwards): Grounding DINO {teacher['grounding_dino']:.2f} s + "
              f"SAM encoder {teacher['sam_encoder']:.2f} s + SAM decoder (8 boxes) {teacher['sam_decoder']:.2f} s = "
              f"{teacher['total']:.2f} s/image")
    print(f"{'student':<10} {'min':>5} {'steps':>6} {'mIoU':>6} {'wheel':>6} {'AP':>6} {'AP50':>6} {'img/s':>6} {'onnx':>6} {'x teacher':>9}")
    for name, r in results.items():
        ratio = f"{teacher['total'] * r['images_per_s_torch']:9.0f}" if teacher else "      n/a"
        print(f"{name:<10} {r['train_minutes']:5.1f} {r['steps']:6d} {100 * r['miou']:6.1f} "
              f"{100 * (r['wheel_iou'] or 0):6.1f} {100 * r['mask_ap']:6.1f} {100 * r['mask_ap50']:6.1f} "
              f"{r['images_per_s_torch']:6.2f} {r['images_per_s_onnx']:6.2f} {ratio}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({"students": results, "teacher_seconds": teacher,
                                                         "minutes_per_student": args.minutes_per_student}, indent=2))


if __name__ == "__main__":
    main()
