"""Dataset formats: COCO, YOLO, Pascal VOC and semantic mask PNGs.

Each format module has small symmetric functions, in supervision's style: ``save_*`` writes one image's
``sv.Detections`` (or a whole split, streamed) and ``load_*`` reads it back as ``sv.Detections``. Boxes are
always XYXY pixels of the original image; masks are (N, H, W) bool; ``class_id`` is 0-based and contiguous.

:class:`grounded.formats.coco.CocoDataset` is a lazy reader for external COCO files (parse the JSON once,
decode one image's masks only when asked).
"""
