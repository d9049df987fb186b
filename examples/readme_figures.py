"""Draw the README's figures: the pipeline diagram and real human labels drawn by grounded's annotator.

    python examples/readme_figures.py            # writes docs/pipeline.png and docs/car_parts_labels.png

No model output is drawn here: the machines this project is built on have no pretrained weights, and a
picture of random-weight predictions would show nothing true. The second figure shows the ground-truth
polygons of ../shared/data/car_parts (Car Parts Segmentation, Pasupa et al. 2021) read by grounded's COCO
reader and drawn by ``grounded.io.annotate`` — the same drawing ``grounded segment`` uses for predictions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def pipeline_diagram(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=110)
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 3.6)
    ax.axis("off")
    boxes = {
        "image": (0.1, 2.2, "image\n(RGB, any size)", "#e8e8e8"),
        "text": (0.1, 0.5, 'prompt / ontology\n"wheel: [wheel, tire]"', "#e8e8e8"),
        "swin": (2.3, 1.75, "Swin backbone\n(once per image)", "#cfe2f3"),
        "bert": (2.3, 0.5, "caption + token spans\nBERT text encoder", "#cfe2f3"),
        "fusion": (4.5, 1.35, "Grounding DINO\ntext-fused encoder/decoder\n(per prompt)", "#cfe2f3"),
        "select": (6.7, 1.35, "boxes XYXY px\nphrase -> class id\nthresholds, NMS", "#fff2cc"),
        "samenc": (2.3, 2.75, "SAM image encoder\n(once per image)", "#d9ead3"),
        "samdec": (8.7, 1.35, "SAM prompt encoder\n+ mask decoder\n(all boxes, one call)", "#d9ead3"),
    }
    w, h = 1.9, 0.75
    for x, y, label, color in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="#444"))
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=8.5)

    def arrow(a: str, b: str) -> None:
        xa, ya = boxes[a][0] + w, boxes[a][1] + h / 2
        xb, yb = boxes[b][0], boxes[b][1] + h / 2
        if boxes[b][1] < boxes[a][1] - h and boxes[b][0] > boxes[a][0] + 2 * w:  # far below-right: enter from top
            xb, yb = boxes[b][0] + w / 2, boxes[b][1] + h
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=12, color="#333"))

    for a, b in [("image", "swin"), ("text", "bert"), ("swin", "fusion"), ("bert", "fusion"),
                 ("fusion", "select"), ("select", "samdec"), ("image", "samenc"), ("samenc", "samdec")]:
        arrow(a, b)
    ax.text(9.65, 0.75, "sv.Detections: xyxy, mask (N,H,W),\nconfidence, class_id, class_name,\nphrase, mask_score",
            ha="center", va="center", fontsize=8, style="italic")
    ax.set_title("grounded: text prompt -> boxes -> masks (blue: Grounding DINO, green: SAM)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def car_parts_labels(out: Path, dataset: Path, count: int = 4, size: int = 384) -> None:
    from grounded.formats.coco import CocoDataset
    from grounded.io.annotate import annotate
    from grounded.utils.images import load_image

    ds = CocoDataset(dataset / "annotations.json", dataset)
    wheel = ds.classes.index("wheel")
    tiles, last = [], -10**9
    for i in range(len(ds)):
        if i - last < 60 or ds.num_annotations(i) < 4:  # spread out: the dataset holds near-duplicates
            continue
        dets = ds.detections(i)
        if (dets.class_id == wheel).sum() < 2:
            continue
        image = load_image(ds.image_path(i))
        tiles.append(np.asarray(annotate(image, dets, boxes=False).resize((size, size))))
        last = i
        if len(tiles) == count:
            break
    grid = np.concatenate([np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:4], axis=1)], axis=0)
    Image.fromarray(grid).save(out, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--car-parts", type=Path, default=ROOT.parent / "shared" / "data" / "car_parts" / "train")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline_diagram(args.out / "pipeline.png")
    if args.car_parts.is_dir():
        car_parts_labels(args.out / "car_parts_labels.png", args.car_parts)
    else:
        print(f"{args.car_parts} not found: skipped the labels figure")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
