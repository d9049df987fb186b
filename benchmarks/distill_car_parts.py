"""Benchmark: students distilled on Car Parts Segmentation (ground-truth masks stand in for the teacher's labels).

On ``../shared/data/car_parts/train`` (400 photos, 512 x 512, 18 part classes) with the seeded split that
training uses (seed 0: 60 test photos held out first, then 68 validation, 272 train), each student is trained
from scratch within a compute budget (``grounded train --budget``: the steps that fit are planned, the schedule
ends decayed) and scored at the photos' own resolution on the test split (which chose nothing) beside the
validation split (which chose the checkpoint):

- test parts mIoU (the 18 part classes; background apart) with its 95% bootstrap interval over photos, test
  wheel IoU, the val/test gap (val parts mIoU - test parts mIoU), per-class IoU of both, background IoU;
  with ``--tta-flip`` also the test parts mIoU with test-time flip averaging (left/right classes swapped);
- mask AP / AP50 (pycocotools, ``iouType="segm"``) with the student's instances two ways: boundary-aware
  (what ``predict`` returns) and connected components of the class map;
- parameters and GFLOPs (``torch.utils.flop_counter``) at the training size and at 512 px; steps reached;
- speed on 512 x 512 photos: the network alone (a 512 x 512 input) and the whole ``predict`` path (resize
  to the training size, forward, one up-sampling, instances), torch and ONNX Runtime, 1 and 2 threads;
- the full-size teacher on the same image size: Grounding DINO tiny (Swin-T + BERT-base, ``GroundingDinoConfig()``)
  at 800 x 800 with the 18-class caption + SAM ViT-B (``SamConfig()``) encoder at 1024 and its decoder for 8
  boxes (about the mean number of parts per photo), random weights (they cost what real ones cost), bare
  forwards (pre/post-processing not counted, which flatters the teacher), and the ratio of its seconds per
  image to the student's (ONNX, whole predict path, same thread count).

Run (a 30-minute budget per student; ``--run`` scores an already trained run instead of training one)::

    python benchmarks/distill_car_parts.py --students fast --budget 30m --out /tmp/distill_bench
    python benchmarks/distill_car_parts.py --run /tmp/distill_run      # the default student of `grounded train`

A run trained before the test split existed kept none: it is scored on its validation split only (no gap).

Speed is measured side by side in this one process; on a machine shared with other work, quote the load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    median_seconds,  # benchmarks/ is on sys.path: run as a script, or imported by its neighbours
)

from grounded.distill.budget import parse_budget
from grounded.distill.checkpoint import load_student
from grounded.distill.config import StudentConfig, TrainConfig
from grounded.distill.data import open_dataset
from grounded.distill.evaluate import format_table
from grounded.distill.export import load_onnx
from grounded.distill.predictor import StudentPredictor
from grounded.distill.students import profile
from grounded.distill.workflow import default_lr, evaluate_run, train_run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = {"fast": "small", "unet": "small", "segformer": "b0", "mobilenet_deeplab": "1.0", "mobilevit": "1.0"}


def student_speed(run: Path, images: list[np.ndarray], threads: int, repeats: int) -> dict[str, float]:
    """Seconds per 512 px image: network alone (torch, ONNX) and the whole predict path (torch, ONNX)."""
    torch.set_num_threads(threads)
    student, _ = load_student(run)
    onnx_run, _ = load_onnx(run / "student.onnx", threads)
    x = np.random.default_rng(0).random((1, 3, 512, 512), dtype=np.float32)
    with torch.inference_mode():
        torch_net = median_seconds(lambda: student(torch.from_numpy(x), full_size=False), repeats)
    onnx_net = median_seconds(lambda: onnx_run(x), repeats)
    paths = {}
    for name, path in (("torch", run), ("onnx", run / "student.onnx")):
        predictor = StudentPredictor.load(path, device="cpu", threads=threads)
        paths[name] = median_seconds(lambda p=predictor: [p.predict(im) for im in images], 1) / len(images)
    return {"torch_net": torch_net, "onnx_net": onnx_net, "torch_predict": paths["torch"], "onnx_predict": paths["onnx"]}


def teacher_seconds(class_names: list[str], threads: int, boxes: int = 8) -> dict[str, float]:
    """Median seconds of the full-size teacher's forwards (see the module docstring)."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection, SamConfig, SamModel

    torch.set_num_threads(threads)
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
    pixels, sam_pixels = torch.rand(1, 3, 800, 800), torch.rand(1, 3, 1024, 1024)
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


def accuracy(run: Path, data: Path, tta_flip: bool | None = None, out: Path | None = None) -> tuple[dict, dict]:
    """(metrics of ``evaluate_run``, the accuracy figures of a trained run): the test split (or, for a run from
    before it, val) beside val; ``tta_flip`` overrides the student's test-time flip (report in ``out``)."""
    metrics, _ = evaluate_run(run, data=data, split="val", out=out, progress=False, tta_flip=tta_flip)
    test = metrics.get("test", metrics)  # a run from before the test split: val only
    return metrics, {
        "split_scored": "test" if "test" in metrics else "val", "test_images": test["images"],
        "parts_miou": test["miou"], "parts_miou_ci": test.get("miou_ci"), "wheel_iou": test["per_class_iou"].get("wheel"),
        "val_parts_miou": metrics["miou"], "val_wheel_iou": metrics["per_class_iou"].get("wheel"),
        "val_test_gap": metrics.get("gap", {}).get("miou"),
        "background_iou": test["background_iou"], "mask_ap": test["mask_ap"], "mask_ap50": test["mask_ap50"],
        "mask_ap_components": test.get("mask_ap_components"),
        "mask_ap50_components": test.get("mask_ap50_components"), "per_class_iou": test["per_class_iou"],
        "val_per_class_iou": metrics["per_class_iou"]}


def score(name: str, run: Path, data: Path, args: argparse.Namespace, speed_images: list[np.ndarray]) -> dict:
    metrics, figures = accuracy(run, data)
    print(f"\n== {name}: {run} on {metrics['images']} validation and {figures['test_images'] if 'test' in metrics else 0} "
          "test photos")
    print(format_table(metrics))
    flipped = (evaluate_run(run, data=data, split="test", out=run / "eval_tta_flip", progress=False, tta_flip=True)[0]
               if args.tta_flip and "test" in metrics else None)
    student, record = load_student(run)
    at_train, at_512 = profile(student, record["image_size"]), profile(student, 512)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    result = {"run": str(run), "image_size": record["image_size"], "steps": summary.get("steps"),
              "planned_steps": summary.get("planned_steps"), "train_minutes": summary.get("train_minutes"),
              "params": int(at_train["params"]), "gflops_train_size": at_train["gflops"], "gflops_512": at_512["gflops"],
              **figures, "tta_flip_parts_miou": flipped["miou"] if flipped else None}
    for threads in (1, 2):
        result[f"seconds_{threads}_thread"] = student_speed(run, speed_images, threads, args.repeats)
    return result


def _interval(ci: list[float] | None) -> str:
    return f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "car_parts" / "train")
    parser.add_argument("--out", type=Path, default=Path("/tmp/distill_bench"))
    parser.add_argument("--students", default="fast", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--budget", default="30m", help="training budget per student (default %(default)s)")
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="score this trained run instead of training (repeatable)")
    parser.add_argument("--speed-images", type=int, default=10, help="held-out photos timed through predict")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats of the network alone")
    parser.add_argument("--skip-teacher", action="store_true")
    parser.add_argument("--tta-flip", action="store_true", help="also score the test split with test-time flip")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared/data/car_parts/train")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    splits = open_dataset(args.data, 0.2, seed=0, test_fraction=TrainConfig().test_fraction)
    print(f"data: {args.data} -> {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test photos, "
          f"{len(splits.class_names)} classes")
    speed_images = [splits.test.image(i) for i in range(min(args.speed_images, len(splits.test)))]
    runs = [(run.name, run) for run in args.run]
    for name in [] if args.run else args.students.split(","):
        student = StudentConfig(arch=name, size=SIZES[name])
        cfg = TrainConfig(budget_minutes=parse_budget(args.budget), lr=default_lr(student), seed=0)
        train_run(args.data, args.out / name, student, cfg, resume=False, export=True, progress=False)
        runs.append((name, args.out / name))
    results = {name: score(name, run, args.data, args, speed_images) for name, run in runs}

    teacher = None if args.skip_teacher else {t: teacher_seconds(splits.class_names, t) for t in (1, 2)}
    print(f"\n== summary (test split: {len(splits.test)} photos that chose nothing, 512 x 512; load average now "
          f"{os.getloadavg()[0]:.1f})")
    if teacher:
        for t, s in teacher.items():
            print(f"teacher, {t} thread(s) (random full-size weights, bare forwards): Grounding DINO "
                  f"{s['grounding_dino']:.2f} s + SAM encoder {s['sam_encoder']:.2f} s + SAM decoder (8 boxes) "
                  f"{s['sam_decoder']:.2f} s = {s['total']:.2f} s/image")
    print("| student | params | GFLOPs (train size / 512) | steps | test parts mIoU [95% CI] | val parts mIoU | val - test gap | "
          "test wheel IoU | mask AP / AP50 boundary | "
          "mask AP / AP50 components | ms 512 net torch / onnx, 1 thr | ms 512 net onnx, 2 thr | predict img/s onnx 1 / 2 thr | "
          "x teacher (onnx predict, 1 / 2 thr) |")
    print("|---" * 14 + "|")
    for name, r in results.items():
        one, two = r["seconds_1_thread"], r["seconds_2_thread"]
        ratio = (f"{teacher[1]['total'] / one['onnx_predict']:.0f} / {teacher[2]['total'] / two['onnx_predict']:.0f}"
                 if teacher else "n/a")
        print(f"| {name} | {r['params'] / 1e6:.2f} M | {r['gflops_train_size']:.2f} / {r['gflops_512']:.2f} | {r['steps']} | "
              f"{r['parts_miou']:.3f} [{_interval(r['parts_miou_ci'])}] | {r['val_parts_miou']:.3f} | "
              f"{_signed(r['val_test_gap'])} | {r['wheel_iou'] or 0:.3f} | {r['mask_ap']:.3f} / {r['mask_ap50']:.3f} | "
              f"{r['mask_ap_components'] or 0:.3f} / {r['mask_ap50_components'] or 0:.3f} | "
              f"{1000 * one['torch_net']:.1f} / {1000 * one['onnx_net']:.1f} | {1000 * two['onnx_net']:.1f} | "
              f"{1 / one['onnx_predict']:.1f} / {1 / two['onnx_predict']:.1f} | {ratio} |")
    for name, r in results.items():
        if r["tta_flip_parts_miou"] is not None:
            print(f"{name}: test parts mIoU with test-time flip {r['tta_flip_parts_miou']:.3f} "
                  f"(without {r['parts_miou']:.3f})")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps({"students": results, "teacher_seconds": teacher}, indent=2))
    print(f"wrote {args.out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
