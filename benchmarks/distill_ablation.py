"""Benchmark: what closes a from-scratch student's val -> test gap, one change at a time, same budget (issue 25).

On ``../shared/data/car_parts/train`` (400 photos, 18 parts; the seeded split training uses: 60 test photos
held out first, 68 validation, 272 train) one FastSeg student per row is trained from scratch with **the same
number of optimiser steps** (``--steps``: the fair budget on a shared machine, where a budget in minutes buys
what the load leaves; ``--budget 10m`` gives every row the same wall time instead). Rows:

- ``baseline``: today's default (``grounded train``: FastSeg small, 320 px, lr 2e-3, flip + class-balanced
  multi-scale crops + colour jitter, CE + Dice, boundary head);
- ``+CHANGE``, each change alone (:data:`CHANGES`: small rotations, blur + JPEG noise, Lovász-softmax loss,
  EMA weights, training resolution, test-time flip; ``noaug``, today's augmentations off, on request);
- ``+kept``: every change whose row beat the baseline's **validation** parts mIoU, together (``--keep-by
  test`` chooses with the test split instead, which then no longer chose nothing; ``--keep a,b`` names them).

Every row is scored by :func:`distill_car_parts.accuracy` at the photos' own resolution on the test split
(which chose nothing) beside validation (which chose the checkpoint): test parts mIoU with its 95 % bootstrap
interval over photos, val parts mIoU, the gap, test wheel IoU and per-class IoU of both. A change "proves"
itself only when its test interval clears the baseline's (no overlap). Written: ``OUT/ablation.md`` (a row per
change, then per-class test / val IoU) and ``OUT/ablation.json``; ``OUT/ROW/`` are the run folders (a row
whose folder already holds a finished run with the same settings is scored again, not retrained).

Run (one core; measure one row first, then pick ``--steps`` to fit)::

    OMP_NUM_THREADS=1 python benchmarks/distill_ablation.py --steps 300 --out /tmp/ablation
    OMP_NUM_THREADS=1 python benchmarks/distill_ablation.py --budget 5m --changes rotate,lovasz
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_car_parts import DATA, accuracy  # noqa: E402

from grounded.distill.budget import parse_budget  # noqa: E402
from grounded.distill.checkpoint import read_record  # noqa: E402
from grounded.distill.config import StudentConfig, TrainConfig  # noqa: E402
from grounded.distill.workflow import default_lr, train_run  # noqa: E402


@dataclass
class Change:
    """One row's difference from the baseline: TrainConfig fields, AugmentConfig fields, test-time flip."""

    what: str
    train: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    tta_flip: bool = False  # scoring only: the baseline's student, scored with its mirror image averaged in


CHANGES: dict[str, Change] = {
    "rotate": Change("small rotations, up to 10 degrees", augment={"rotate": 10.0}),
    "blur_jpeg": Change("Gaussian blur (p 0.3, sigma 0.3-1.5 px) + JPEG round trip (p 0.3, quality 30-90)",
                        augment={"blur": 0.3, "jpeg": 0.3}),
    "lovasz": Change("+ Lovász-softmax loss, weight 1", train={"lovasz_weight": 1.0}),
    "ema": Change("EMA of the weights (decay 0.999) validated and kept", train={"ema": True}),
    "size384": Change("training resolution 384 px (default 320; ~1.4x the compute per step)", train={"image_size": 384}),
    "tta_flip": Change("test-time flip (scoring only: the baseline's student)", tta_flip=True),
    "noaug": Change("today's augmentations off (flip, zoom crops, colour jitter): what they give",
                    augment={"hflip": 0.0, "scale": (1.0, 1.0), "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}),
}
DEFAULT_CHANGES = ("rotate", "blur_jpeg", "lovasz", "ema", "size384", "tta_flip")


def combine(names: list[str]) -> Change:
    """The changes ``names`` together (their fields merged; none of them overlap)."""
    parts = [CHANGES[n] for n in names]
    return Change(" + ".join(names) or "nothing kept", {k: v for c in parts for k, v in c.train.items()},
                  {k: v for c in parts for k, v in c.augment.items()}, any(c.tta_flip for c in parts))


def row_config(base: TrainConfig, change: Change) -> TrainConfig:
    """``base`` with a change's training and augmentation fields."""
    data = base.to_dict()
    return TrainConfig.from_dict({**data, **change.train, "augment": {**data["augment"], **change.augment}})


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


def finished_with(run: Path, cfg: TrainConfig) -> bool:
    """Whether ``run`` holds a finished run trained with ``cfg`` (its record's settings, its summary)."""
    if not (run / "summary.json").is_file() or not (run / "student.json").is_file():
        return False
    return _same(read_record(run / "student.json")[0].get("train", {}), cfg.to_dict())


def train_row(data: Path, run: Path, student: StudentConfig, cfg: TrainConfig, trained: dict[str, Path]) -> dict:
    """Train (or reuse) the run for ``cfg``; returns its summary plus ``seconds`` and ``load`` (1-minute average
    at the end)."""
    key = json.dumps(cfg.to_dict(), sort_keys=True)
    if key in trained:  # an identical configuration was trained for another row
        run = trained[key]
    if not finished_with(run, cfg):
        started = time.monotonic()
        train_run(data, run, student, cfg, resume=False, export=False, progress=False)
        summary = json.loads((run / "summary.json").read_text())
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["load_end"] = round(os.getloadavg()[0], 2)
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
    trained[key] = run
    return json.loads((run / "summary.json").read_text())


def score_row(name: str, change: Change, data: Path, out: Path, student: StudentConfig, base: TrainConfig,
              trained: dict[str, Path]) -> dict[str, Any]:
    """Train one row (or reuse its run) and score it: summary, accuracy figures and the change."""
    cfg = row_config(base, change)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {change.what}", flush=True)
    summary = train_row(data, out / name, student, cfg, trained)
    run = Path(summary["run"])
    _, figures = accuracy(run, data, tta_flip=change.tta_flip or None,
                          out=run / ("eval_tta_flip" if change.tta_flip else "eval"))
    row = {"name": name, "what": change.what, "train_changes": change.train, "augment_changes": change.augment,
           "tta_flip": change.tta_flip, "run": str(run), "steps": summary["steps"],
           "train_minutes": summary["train_minutes"], "load_end": summary.get("load_end"), **figures}
    print(f"    test parts mIoU {_pct(row['parts_miou'])} [{_ci(row)}], val {_pct(row['val_parts_miou'])}, "
          f"{row['steps']} steps in {row['train_minutes']:.1f} min", flush=True)
    return row


def clears(row: dict[str, Any], baseline: dict[str, Any]) -> str:
    """'better' / 'worse' when the row's test interval and the baseline's do not overlap, else 'overlap'."""
    (low, high), (base_low, base_high) = row["parts_miou_ci"], baseline["parts_miou_ci"]
    return "better" if low > base_high else "worse" if high < base_low else "overlap"


def kept_changes(rows: list[dict[str, Any]], by: str) -> list[str]:
    """Changes whose row beat the baseline's val parts mIoU (``by="val"``) or test parts mIoU (``"test"``)."""
    key = "val_parts_miou" if by == "val" else "parts_miou"
    baseline = rows[0][key]
    return [r["name"][1:] for r in rows[1:] if r[key] > baseline]


def _pct(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{100 * value:{sign}.1f}"


def _ci(row: dict[str, Any]) -> str:
    return "-".join(_pct(v) for v in row["parts_miou_ci"]) if row.get("parts_miou_ci") else "n/a"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The ablation table (a row per change) and the per-class table (test / val IoU, %)."""
    baseline = rows[0] if rows[0]["name"] == "baseline" else None  # None: --no-baseline
    lines = [f"# Ablation: {meta['data']} (IoU in %)", "",
             f"`{meta['command']}`", "",
             f"Budget: {meta['budget']}; CPU: {meta['cpu']}, torch threads {meta['threads']}; load average "
             f"{meta['load_start']} at the start, {meta['load_end']} at the end; {meta['minutes']:.1f} min in all. "
             f"Kept by {meta['keep_by']}: {', '.join(meta['kept']) or 'nothing'}.", "",
             "| row | change | steps | train min | test parts mIoU [95% CI] | vs baseline | CI vs baseline's | "
             "val parts mIoU | gap val - test | test wheel IoU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reused = Path(r["run"]).name != r["name"]  # scored with another row's student (same training)
        minutes = f"({Path(r['run']).name}'s run)" if reused else f"{r['train_minutes']:.1f}"
        first = baseline is None or r is baseline
        lines.append(f"| {r['name']} | {r['what']} | {r['steps']} | {minutes} | {_pct(r['parts_miou'])} [{_ci(r)}] | "
                     f"{'-' if first else _pct(r['parts_miou'] - baseline['parts_miou'], '+')} | "
                     f"{'-' if first else clears(r, baseline)} | {_pct(r['val_parts_miou'])} | "
                     f"{_pct(r['val_test_gap'], '+')} | {_pct(r['wheel_iou'])} |")
    lines += ["", "Per-class IoU %, test / val:", "",
              "| class | " + " | ".join(r["name"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for name in rows[0]["per_class_iou"]:
        cells = [f"{_pct(r['per_class_iou'].get(name))} / {_pct(r['val_per_class_iou'].get(name))}" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| (background, test) | " + " | ".join(_pct(r["background_iou"]) for r in rows) + " |")
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = "unknown"
    return f"{model}, {os.cpu_count()} cores"


def ablate(data: Path, out: Path, student: StudentConfig, base: TrainConfig, changes: list[str], keep_by: str = "val",
           keep: list[str] | None = None, budget: str = "", baseline: bool = True) -> dict[str, Any]:
    """Train and score the baseline, each change alone and the kept ones together; write ``out/ablation.md`` and
    ``out/ablation.json``; returns what the JSON holds."""
    import torch

    unknown = sorted(set(changes) - set(CHANGES))
    if unknown:
        raise SystemExit(f"unknown change(s) {unknown}; choose among {sorted(CHANGES)}")
    started, load_start = time.monotonic(), round(os.getloadavg()[0], 2)
    out.mkdir(parents=True, exist_ok=True)
    trained: dict[str, Path] = {}
    rows = [score_row("baseline", Change("today's default"), data, out, student, base, trained)] if baseline else []
    rows += [score_row(f"+{name}", CHANGES[name], data, out, student, base, trained) for name in changes]
    chosen = keep if keep is not None else kept_changes(rows, keep_by)
    if chosen:
        rows.append(score_row("+kept", combine(chosen), data, out, student, base, trained))
    meta = {"data": str(data), "command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "unset"),
                                                    "python", *sys.argv]),
            "budget": budget, "cpu": cpu_name(), "threads": torch.get_num_threads(), "load_start": load_start,
            "load_end": round(os.getloadavg()[0], 2), "minutes": (time.monotonic() - started) / 60,
            "keep_by": "named" if keep is not None else keep_by, "kept": chosen,
            "student": student.to_dict(), "baseline_config": base.to_dict()}
    result = {"meta": meta, "rows": rows}
    (out / "ablation.json").write_text(json.dumps(result, indent=2))
    (out / "ablation.md").write_text(markdown(rows, meta))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA / "car_parts" / "train")
    parser.add_argument("--out", type=Path, default=Path("/tmp/distill_ablation"))
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=300, help="optimiser steps per row (default %(default)s)")
    length.add_argument("--budget", help="or a wall-time budget per row, e.g. 5m (rows then differ in steps)")
    parser.add_argument("--changes", default=",".join(DEFAULT_CHANGES),
                        help=f"comma-separated, of {', '.join(CHANGES)} (default %(default)s)")
    parser.add_argument("--keep-by", choices=("val", "test"), default="val",
                        help="which split chooses the changes of the +kept row (default %(default)s: test then "
                             "still chose nothing)")
    parser.add_argument("--keep", help="name the +kept row's changes instead (comma-separated; 'none': no row)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="leave out the baseline row (with --keep: e.g. the kept row alone, in another process)")
    parser.add_argument("--size", default="small", help="FastSeg size (default %(default)s)")
    parser.add_argument("--image-size", type=int, default=TrainConfig().image_size)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not args.data.exists():
        print(f"skipped: {args.data} not found (this benchmark needs ../shared/data/car_parts/train)")
        return
    student = StudentConfig(arch="fast", size=args.size)
    if args.budget:
        base, budget = TrainConfig(budget_minutes=parse_budget(args.budget)), f"{args.budget} per row"
    else:
        base, budget = TrainConfig(max_steps=args.steps), f"{args.steps} optimiser steps per row"
    base.lr, base.seed, base.image_size = default_lr(student), args.seed, args.image_size
    keep = None if args.keep is None else [] if args.keep == "none" else args.keep.split(",")
    if args.no_baseline and keep is None:
        parser.error("--no-baseline needs --keep (the kept row is otherwise chosen against the baseline)")
    result = ablate(args.data, args.out, student, base, [c for c in args.changes.split(",") if c], args.keep_by, keep,
                    budget, baseline=not args.no_baseline)
    print("\n" + markdown(result["rows"], result["meta"]))
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'ablation.json'}")


if __name__ == "__main__":
    main()
