"""Read an external COCO dataset lazily (here Car Parts, with its quirks) and draw one image's labels.

    python examples/label_import_coco.py ../shared/data/car_parts/train/annotations.json car_parts.png

Boolean ``iscrowd``, the unused ``_background_`` category and images kept in ``JPEGImages/`` while
``file_name`` is bare are all handled; class ids are contiguous over the 18 real part classes.
"""

from __future__ import annotations

import sys

import supervision as sv
from PIL import Image

from grounded.formats.coco import CocoDataset
from grounded.utils.images import load_image


def main(annotations: str, out: str, index: int = 0) -> None:
    dataset = CocoDataset(annotations)
    print(f"{len(dataset)} images, {len(dataset.classes)} classes: {', '.join(dataset.classes)}")
    path, detections = dataset[index]  # masks of this image only
    image = load_image(path)
    image = sv.MaskAnnotator().annotate(image.copy(), detections)
    image = sv.LabelAnnotator(text_scale=0.4).annotate(image, detections, labels=list(detections.data["class_name"]))
    Image.fromarray(image).save(out)
    print(f"{path}: {len(detections)} objects drawn to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
