"""The one atomic write: a temporary file beside the target, fsync'ed, then renamed; every writer goes through it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import supervision as sv

from grounded.formats import files


@pytest.fixture
def journal(monkeypatch):
    """Record, in order, each fsync (the file's path) and each rename (source, target) the helper makes."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    return events


def _committed(events):
    """Targets renamed into place, each checked to be fsync'ed (as its temporary, in its folder) before."""
    done = []
    for k, event in enumerate(events):
        if event[0] == "rename":
            _, src, dst = event
            assert ("fsync", src) in events[:k], f"{dst} renamed before its data was flushed"
            assert os.path.dirname(src) == os.path.dirname(dst)  # same folder: the rename is atomic
            done.append(os.path.basename(dst))
    return done


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads fd paths from /proc")
def test_write_is_flushed_then_renamed_and_leaves_no_temporary(tmp_path, journal):
    target = tmp_path / "sub" / "summary.json"
    files.atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert _committed(journal) == ["summary.json"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "history.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads fd paths from /proc")
def test_summaries_checkpoints_and_exports_go_through_it(tmp_path, journal):
    import torch

    from grounded.distill.evaluate import plot_history, write_report
    from grounded.formats.checkpoint import save_checkpoint, save_state
    from grounded.formats.coco import CocoWriter
    from grounded.formats.label_studio import LabelStudioWriter

    result = {"per_class_iou": {"car": 0.5}, "per_class_ap": {"car": 0.4}, "background_iou": 0.9, "miou": 0.7,
              "pixel_accuracy": 0.8, "mask_ap": 0.4, "mask_ap50": 0.6, "images": 2}
    write_report(result, tmp_path)
    row = {"step": 1, "train_loss": 1.0, "val_loss": 1.0, "miou": 0.5, "pixel_accuracy": 0.5}
    plot_history([row, {**row, "step": 2}], tmp_path / "training_curve.png")
    save_checkpoint(torch.nn.Linear(2, 2), tmp_path, "student", {"format": "test/1"})
    save_state(tmp_path, {"step": 3})
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:5, 2:6] = True
    detections = sv.Detections(xyxy=np.array([[2, 2, 6, 5]], np.float32), mask=mask, class_id=np.array([0]),
                                data={"class_name": np.array(["car"])})
    with CocoWriter(tmp_path / "train.json", ["car"]) as coco:
        coco.add("a.png", 8, 8, detections)

    class Image:  # what grounded.label.export hands every writer
        relative, height, width, masks = "a.png", 8, 8, None

    Image.detections = detections
    studio = LabelStudioWriter(tmp_path / "studio", ["car"])
    studio.add(Image)
    studio.close()
    assert sorted(_committed(journal)) == sorted([
        "metrics.json", "metrics.txt", "training_curve.png", "student.safetensors", "student.json", "train_state.pt",
        "train.json", "tasks.json", "label_config.xml"])
    assert not list(tmp_path.rglob("*.tmp"))
