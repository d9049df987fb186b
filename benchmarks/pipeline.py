"""Benchmark: our pipeline stage by stage, against two plain ways of driving the same weights.

    python benchmarks/pipeline.py --quick            # 1 photo, 1 repeat: 8.5 min on 2 CPU cores
    python benchmarks/pipeline.py --quick --memory-images 50   # ... with the 50-image memory run (+7 min)
    python benchmarks/pipeline.py                    # 3 photos x 2 repeats, 50-image memory run
    python benchmarks/pipeline.py --device cuda --autocast bfloat16 --batch 4

Models are full-size architectures with random weights (Grounding DINO tiny = Swin-T + BERT-base, SAM
ViT-B; ``--detector-arch base``, ``--sam-arch vit-l/vit-h``), saved once to ``--cache-dir`` and loaded by
path. Random weights cost what real ones cost; detections are meaningless, but agreement between float32
and a faster setting is still the agreement of the same computation. Photos: ../shared/data/images.

Each configuration runs in its own subprocess, so its peak RSS (and its allocator setting) is its own. Ways
of running:
- ours: ``Predictor.set_image`` (detector backbone + SAM image encoder once), then ``segment`` per prompt;
  all phrases of a prompt in one caption, all boxes in one mask-decoder call. On a CPU with the defaults'
  CPU work (``retain_memory``, ``cpu_kernels``); the row "ours, CPU work off" turns both off, which leaves
  transformers' operations and glibc's allocator as the plain ways below have them.
- way (a), the autodistill Grounded-SAM way: one detector pass per class, SAM image encoder once, one
  mask-decoder call per box.
- way (b), the transformers-docs / LangSAM way: one caption with every class, one detector pass, SAM
  (image encoder + all boxes) in one call, per prompt.
Every way keeps the same number of boxes (``--boxes-per-class`` x classes, best first, no NMS) so SAM's
work is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import _common as C  # noqa: E402
import _report  # noqa: E402

FIVE = ["car", "wheel", "dog", "person", "window"]  # the 5-class ontology
ONE = ["car"]
FOUR = ["car", "wheel", "dog", "person"]  # 4 prompts on one image


# ------------------------------------------------------------------------------------------ way (a)/(b)
class Plain:
    """The same saved weights driven with transformers' own processors and models, written plainly."""

    def __init__(self, det_dir: str, sam_dir: str, device: str, k: int) -> None:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection, SamModel, SamProcessor

        self.device, self.k = torch.device(device), k
        self.det_proc = AutoProcessor.from_pretrained(det_dir)
        self.det = GroundingDinoForObjectDetection.from_pretrained(det_dir).to(self.device).eval()
        self.sam_proc = SamProcessor.from_pretrained(sam_dir)
        self.sam = SamModel.from_pretrained(sam_dir).to(self.device).eval()

    @torch.inference_mode()
    def boxes(self, image: np.ndarray, classes: list[str], top: int) -> tuple[np.ndarray, np.ndarray]:
        """One detector pass on the caption "a. b. c." -> the ``top`` best boxes (XYXY pixels), label ids."""
        inputs = self.det_proc(images=image, text=". ".join(classes) + ".", return_tensors="pt").to(self.device)
        out = self.det(**inputs)
        res = self.det_proc.post_process_grounded_object_detection(
            out, inputs.input_ids, threshold=0.0, text_threshold=0.25, target_sizes=[image.shape[:2]])[0]
        order = res["scores"].argsort(descending=True)[:top].cpu()
        labels = [res["text_labels"][i] for i in order]  # first class named in the label (the demos' rule)
        ids = np.array([next((j for j, c in enumerate(classes) if c in t), -1) for t in labels])
        return res["boxes"][order].cpu().numpy(), ids

    @torch.inference_mode()
    def masks(self, image: np.ndarray, boxes: np.ndarray, one_by_one: bool) -> np.ndarray:
        """SAM on ``boxes``: all in one call (image encoder included), or encoder once + one call per box."""
        if len(boxes) == 0:
            return np.zeros((0, *image.shape[:2]), bool)
        inputs = self.sam_proc(images=image, input_boxes=[boxes.tolist()], return_tensors="pt").to(self.device)
        if not one_by_one:
            out = self.sam(**inputs, multimask_output=False)
            return self._post(out.pred_masks, inputs)
        emb = self.sam.get_image_embeddings(inputs["pixel_values"])
        masks = []
        for box in inputs["input_boxes"][0]:
            out = self.sam(image_embeddings=emb, input_boxes=box[None, None], multimask_output=False)
            masks.append(self._post(out.pred_masks, inputs))
        return np.concatenate(masks)

    def _post(self, pred_masks: torch.Tensor, inputs) -> np.ndarray:
        return self.sam_proc.image_processor.post_process_masks(
            pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0][:, 0].numpy()

    def way_a(self, image: np.ndarray, classes: list[str]) -> dict:
        found = [self.boxes(image, [c], self.k) for c in classes]  # one detector pass per class
        xyxy = np.concatenate([b for b, _ in found])
        ids = np.concatenate([np.full(len(b), i) for i, (b, _) in enumerate(found)])
        return {"xyxy": xyxy, "class_id": ids, "mask": self.masks(image, xyxy, one_by_one=True)}

    def way_b(self, image: np.ndarray, classes: list[str]) -> dict:
        xyxy, ids = self.boxes(image, classes, self.k * len(classes))  # one caption, one pass
        return {"xyxy": xyxy, "class_id": ids, "mask": self.masks(image, xyxy, one_by_one=False)}


# ------------------------------------------------------------------------------------------ workers
@torch.inference_mode()
def warm_up(det_proc, det, sam_proc, sam, device: str) -> None:
    """First-call costs (kernel selection, lazy imports) paid before timing, cheaply: the detector at a
    256-pixel input, SAM's prompt encoder, mask decoder and mask post-processing on a zero embedding."""
    from grounded.models.acceleration import set_detector_size

    size = dict(det_proc.image_processor.size)
    set_detector_size(det_proc.image_processor, 256)  # >= 900 tokens: one per query
    image = np.zeros((96, 128, 3), np.uint8)
    inputs = det_proc(images=image, text="car.", return_tensors="pt").to(device)
    det(**inputs)
    det_proc.image_processor.size = size
    sam_in = sam_proc(images=image, input_boxes=[[[10, 10, 60, 60]]], return_tensors="pt").to(device)
    emb = torch.zeros_like(sam.get_image_wide_positional_embeddings())  # (1, 256, 64, 64) for SAM ViT-B
    out = sam(image_embeddings=emb, input_boxes=sam_in["input_boxes"], multimask_output=False)
    sam_proc.image_processor.post_process_masks(out.pred_masks.float().cpu(), sam_in["original_sizes"].cpu(),
                                                sam_in["reshaped_input_sizes"].cpu())


def _sync(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def _hooks(predictor) -> dict[str, float]:
    """Time Grounding DINO's text encoder, fusion encoder and decoder inside ``detect`` (forward hooks)."""
    seconds: dict[str, float] = {}
    inner = predictor.detector.model.model
    for name, module in (("det.text_encoder", inner.text_backbone), ("det.fusion_encoder", inner.encoder),
                         ("det.decoder", inner.decoder)):
        def pre(_m, _a, name=name):
            seconds[name + ".start"] = time.perf_counter()

        def post(_m, _a, _o, name=name):
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - seconds.pop(name + ".start")
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
    return seconds


def work_ours(spec: dict, images: list[np.ndarray]) -> dict:
    from grounded.pipeline.predictor import Predictor

    k, dev = spec["boxes_per_class"], spec["device"]
    opts = {"box_threshold": 0.0, "text_threshold": 0.0, "nms": "none"}
    pred = Predictor(spec["det"], spec["sam"], device=dev, dtype=spec.get("dtype"), local_files_only=True,
                     **spec["accel"], **opts)
    if spec.get("compile"):
        pred.segmenter.model.vision_encoder = torch.compile(pred.segmenter.model.vision_encoder)
    warm_up(pred.detector.processor, pred.detector.model, pred.segmenter.processor, pred.segmenter.model, dev)
    pred.set_image(images[0])  # one discarded full-size pass: first-touch memory and kernel costs
    pred.segment(ONE)
    hooked = _hooks(pred)
    rows, dets = [], []

    def call(prompt: list[str]) -> tuple[float, dict, object]:
        pred.timer.reset()
        hooked.clear()
        t = _sync(dev)
        found = pred.segment(prompt, max_detections=k * len(prompt))
        return _sync(dev) - t, {**pred.timer.seconds, **hooked}, found

    for _ in range(spec["repeats"]):
        for img in images:
            pred.timer.reset()
            t = _sync(dev)
            pred.set_image(img)
            row = {"set": _sync(dev) - t, "set_stages": dict(pred.timer.seconds)}
            prompts = (("one", ONE), ("five", FIVE), ("four", FOUR)) if spec["scenarios"] else (("five", FIVE),)
            for name, prompt in prompts:
                row[name], row[name + "_stages"], found = call(prompt)
                if name == "five":
                    dets.append({"xyxy": found.xyxy, "class_id": found.class_id, "mask": found.mask})
            if spec["scenarios"]:  # the 3 further single prompts of "4 prompts on one image"
                row["further"] = [call([p])[0] for p in FOUR[1:]]
            rows.append(row)
    if spec.get("batch", 1) > 1:  # images/second with segment_batch (GPU)
        b = spec["batch"]
        batch = (images * b)[:b]
        t = _sync(dev)
        pred.segment_batch(batch, FIVE, max_detections=k * len(FIVE))
        rows[0]["batch_s_per_img"] = (_sync(dev) - t) / b
    return {"rows": rows, "dets": dets[: len(images)], "peak_rss": C.peak_rss_gib(),
            "autocast": str(pred.detector.autocast), "threads": torch.get_num_threads()}


def work_plain(spec: dict, images: list[np.ndarray]) -> dict:
    plain = Plain(spec["det"], spec["sam"], spec["device"], spec["boxes_per_class"])
    warm_up(plain.det_proc, plain.det, plain.sam_proc, plain.sam, spec["device"])
    run = plain.way_a if spec["kind"] == "a" else plain.way_b
    plain.way_b(images[0], ONE)  # one discarded full-size pass, as for ours
    rows, dets = [], []
    for _ in range(spec["repeats"]):
        for img in images:
            row = {}
            for name, prompt in (("one", ONE), ("five", FIVE)):
                t = _sync(spec["device"])
                found = run(img, prompt)
                row[name] = _sync(spec["device"]) - t
                if name == "five":
                    dets.append(found)
            if spec["scenarios"]:  # 4 separate prompts: the plain ways redo everything per prompt
                row["further"] = []
                for p in FOUR[1:]:
                    t = _sync(spec["device"])
                    run(img, [p])
                    row["further"].append(_sync(spec["device"]) - t)
            rows.append(row)
    return {"rows": rows, "dets": dets[: len(images)], "peak_rss": C.peak_rss_gib(),
            "threads": torch.get_num_threads()}


def work_memory(spec: dict, images: list[np.ndarray]) -> dict:
    from grounded.pipeline.predictor import Predictor

    pred = Predictor(spec["det"], spec["sam"], device=spec["device"], local_files_only=True, **spec["accel"],
                     box_threshold=0.0, text_threshold=0.0, nms="none")
    peaks, in_use = [], []
    for img in images:
        pred.set_image(img)
        pred.segment(FIVE, max_detections=spec["boxes_per_class"] * len(FIVE))
        peaks.append(C.peak_rss_gib())
        in_use.append(C.heap_in_use_gib())
    return {"peaks": peaks, "in_use": in_use}


def worker(spec_file: str, out_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    images = C.photos(spec["n_images"], names=spec.get("photos"))
    work = {"ours": work_ours, "a": work_plain, "b": work_plain, "memory": work_memory}[spec["kind"]]
    result = work(spec, images)
    dets = result.pop("dets", [])
    np.savez_compressed(out_file + ".npz", **{f"{i}_{k}": np.asarray(v) for i, d in enumerate(dets) for k, v in d.items()})
    Path(out_file).write_text(json.dumps(result))


def launch(spec: dict, tmp: Path, label: str) -> dict:
    """Run one configuration in a fresh interpreter; return its JSON result with ``dets`` reloaded."""
    spec_file, out_file = tmp / f"{label}.spec.json", tmp / f"{label}.json"
    spec_file.write_text(json.dumps(spec))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", str(spec_file), str(out_file)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"configuration {label} failed:\n{proc.stdout[-4000:]}")
    result = json.loads(out_file.read_text())
    saved = np.load(str(out_file) + ".npz")
    n = len({key.split("_")[0] for key in saved.files})
    result["dets"] = [{k: saved[f"{i}_{k}"] for k in ("xyxy", "class_id", "mask")} for i in range(n)]
    print(f"  {label}: done in {time.perf_counter() - t:.0f} s", flush=True)
    return result


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 photo, 1 repeat, 4-image memory run")
    ap.add_argument("--images", type=int, default=3, help="photos per configuration (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="repeats over the photos; medians are printed")
    ap.add_argument("--memory-images", type=int, default=None, help="images in the peak-memory run (default 50; 4 with --quick)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="weights dtype (ours)")
    ap.add_argument("--autocast", default=None, choices=["auto", "bfloat16", "float16"], help="extra autocast row")
    ap.add_argument("--batch", type=int, default=1, help="also time segment_batch with this many images (GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile SAM's image encoder (ours, GPU)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--boxes-per-class", type=int, default=3)
    ap.add_argument("--detector-arch", default="tiny", choices=sorted(C.DINO_SIZES))
    ap.add_argument("--sam-arch", default="vit-b", choices=sorted(C.SAM_SIZES))
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "grounded-bench"))
    ap.add_argument("--tiny", action="store_true", help="tiny models: checks the harness in seconds, times nothing")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(*args.worker)
    if args.quick:
        args.images, args.repeats = 1, 1
    if args.memory_images is None:
        args.memory_images = 4 if args.quick else 50
    cache = Path(args.cache_dir)
    if args.tiny:  # a smoke run of the harness itself, in seconds: numbers mean nothing
        from grounded.testing.tiny import build_tiny_models

        det, sam = build_tiny_models(cache / "tiny", vocab_file=C.BERT_VOCAB if C.BERT_VOCAB.exists() else None)
    else:
        det = C.build_detector(cache / f"dino-{args.detector_arch}", args.detector_arch)
        sam = C.build_segmenter(cache / f"sam-{args.sam_arch}", args.sam_arch)
    base = {"det": str(det), "sam": str(sam), "device": args.device, "threads": args.threads,
            "n_images": args.images, "repeats": args.repeats, "boxes_per_class": args.boxes_per_class,
            "photos": None, "scenarios": False, "accel": {}}
    configs = _report.configurations(args)
    print(_report.header(args, det, sam), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in configs:
            results[label] = launch({**base, **spec}, Path(tmp), label.replace(" ", "_").replace("/", "-"))
        memory = launch({**base, "kind": "memory", "n_images": args.memory_images, "accel": _report.MEMORY_ACCEL},
                        Path(tmp), "memory")
    print(_report.render(results, memory, args))


if __name__ == "__main__":
    main()
