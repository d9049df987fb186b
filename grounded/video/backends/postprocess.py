"""SAM 3 video's post-processing operations, provided locally: mask NMS, hole filling, small-blob removal.

transformers' ``Sam3VideoModel`` runs NMS over its detections' masks (``nms_masks``) and fills small holes /
removes small sprinkles in new masks (``fill_holes_in_mask_scores``) through two operations of a compiled
kernel it fetches from the Hugging Face hub at run time (``kernels-community/cv-utils``): ``generic_nms`` and
``cc_2d``. Offline (or without the ``kernels`` package) it *skips* all three with a warning, and results
change silently. grounded installs :class:`LocalCvUtils` in the kernel's place before SAM 3 video runs
(:func:`install`), so the three run everywhere, offline included, with the reference behaviour of SAM 3's own
CPU implementations (facebookresearch/sam3 ``perflib``):

- ``generic_nms(ious, scores, iou_threshold)``: greedy NMS over a pairwise IoU matrix: take the highest score,
  drop every other whose IoU with it is ``> iou_threshold``, repeat; the kept indices, highest score first
  (= ``torchvision.ops.nms`` when the matrix is box IoU; tested).
- ``cc_2d(mask, get_counts=True)``: connected components of a (B, 1, H, W) uint8 mask, 8-connected (as
  ``skimage.measure.label`` and cc_torch); labels 1..n per image (0: background) and, per pixel, the size of
  its component (0 on the background) (tested against OpenCV's ``connectedComponentsWithStats``).

If transformers' SAM 3 video module no longer has the hook this relies on, :func:`install` refuses with an
error instead of letting the operations be skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from grounded.errors import ModelLoadError

_HOOK = "cv_utils_kernel"  # transformers.models.sam3_video.modeling_sam3_video: the loaded kernel, or None / False


class LocalCvUtils:
    """The two operations of ``kernels-community/cv-utils`` SAM 3 video calls, on the CPU (see module docstring)."""

    @staticmethod
    def generic_nms(ious: torch.Tensor, scores: torch.Tensor, iou_threshold: float, use_iou_matrix: bool = True
                    ) -> torch.Tensor:
        """Kept indices (int64, highest score first) of greedy NMS over the (N, N) IoU matrix ``ious``."""
        iou = ious.detach().float().cpu().numpy()
        order = np.argsort(-scores.detach().float().cpu().numpy(), kind="stable")
        kept = []
        while order.size:
            best = int(order[0])
            kept.append(best)
            order = order[1:][iou[best, order[1:]] <= iou_threshold]
        return torch.tensor(kept, dtype=torch.int64, device=scores.device)

    @staticmethod
    def cc_2d(mask: torch.Tensor, get_counts: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, counts), both int32 shaped like ``mask`` (B, 1, H, W): 8-connected components, per-pixel sizes."""
        from scipy import ndimage

        values = mask.detach().cpu().numpy().astype(bool)
        labels = np.zeros(values.shape, dtype=np.int32)
        counts = np.zeros(values.shape, dtype=np.int32)
        structure = np.ones((3, 3), dtype=bool)  # 8-connectivity
        for b in range(values.shape[0]):
            for c in range(values.shape[1]):
                labelled, found = ndimage.label(values[b, c], structure=structure)
                labels[b, c] = labelled
                if found:
                    sizes = np.bincount(labelled.ravel()).astype(np.int32)
                    sizes[0] = 0
                    counts[b, c] = sizes[labelled]
        return torch.from_numpy(labels).to(mask.device), torch.from_numpy(counts).to(mask.device)


def install() -> None:
    """Put :class:`LocalCvUtils` where SAM 3 video looks for its hub kernel (process-wide; idempotent)."""
    from transformers.models.sam3_video import modeling_sam3_video as module

    if not hasattr(module, _HOOK) or not callable(getattr(module, "nms_masks", None)) \
            or not callable(getattr(module, "fill_holes_in_mask_scores", None)):
        import transformers

        raise ModelLoadError(
            f"transformers {transformers.__version__}'s SAM 3 video has no {_HOOK!r} hook for its NMS / hole-filling "
            f"kernel, which grounded provides locally; without it those steps could be skipped silently, so SAM 3 "
            f"video is refused here: use a transformers 5.x release that has it (checked with 5.25)")
    setattr(module, _HOOK, LocalCvUtils())
