"""Reading and writing results: detections as JSON (masks as COCO RLE), annotated pictures."""
