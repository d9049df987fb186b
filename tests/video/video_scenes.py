"""Synthetic moving shapes with known ground truth, and clip writers (PyAV), for the video tests.

Each object is a filled rectangle of its own colour on a black background, moving at constant speed, visible
from ``first`` to ``last`` (inclusive). The colour says the class (red: car, green: person, blue: dog), so the
fakes (fakes.py) can detect and follow objects by colour exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_OF_CHANNEL = {0: "car", 1: "person", 2: "dog"}


@dataclass(frozen=True)
class Mover:
    id: int  # ground-truth id
    colour: tuple[int, int, int]
    size: tuple[int, int]  # (h, w)
    start: tuple[float, float]  # (y, x) of the top-left corner at frame `first`
    velocity: tuple[float, float]  # pixels per frame
    first: int = 0
    last: int = 10**9

    @property
    def class_name(self) -> str:
        return CLASS_OF_CHANNEL[int(np.argmax(self.colour))]

    def mask(self, frame: int, hw: tuple[int, int]) -> np.ndarray:
        out = np.zeros(hw, dtype=bool)
        if not self.first <= frame <= self.last:
            return out
        t = frame - self.first
        y, x = round(self.start[0] + self.velocity[0] * t), round(self.start[1] + self.velocity[1] * t)
        out[max(0, y): max(0, y + self.size[0]), max(0, x): max(0, x + self.size[1])] = True
        return out


# Two cars and a person: car 1 crosses left to right all along, person 2 walks down and leaves after frame 15,
# car 3 enters from the left at frame 8 (on another row, so never touching car 1).
DEFAULT_MOVERS = (
    Mover(1, (230, 20, 20), (12, 16), (6.0, 4.0), (0.0, 2.0)),
    Mover(2, (20, 220, 30), (14, 10), (10.0, 60.0), (1.5, 0.0), last=15),
    Mover(3, (180, 40, 40), (10, 14), (44.0, 0.0), (0.0, 2.5), first=8),
)


def scene(frames: int = 24, hw: tuple[int, int] = (64, 96), movers=DEFAULT_MOVERS
          ) -> tuple[list[np.ndarray], list[dict[int, np.ndarray]]]:
    """(RGB uint8 frames, per frame {ground-truth id: (H, W) bool mask of its visible pixels})."""
    images, truth = [], []
    for t in range(frames):
        image = np.zeros((*hw, 3), dtype=np.uint8)
        visible: dict[int, np.ndarray] = {}
        for mover in movers:  # later movers are drawn on top
            mask = mover.mask(t, hw)
            if mask.any():
                image[mask] = mover.colour
                for other in visible.values():
                    other &= ~mask
                visible[mover.id] = mask
        images.append(image)
        truth.append({k: v for k, v in visible.items() if v.any()})
    return images, truth


def write_clip(path: str | Path, frames: list[np.ndarray], fps: int = 10, codec: str = "ffv1",
               pix_fmt: str = "bgr0", rotation: int | None = None, pts: list[int] | None = None) -> Path:
    """Encode RGB frames with PyAV (default: lossless FFV1 in Matroska); ``pts`` in 1/fps ticks (VFR clips)."""
    from fractions import Fraction

    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(folder: str | Path, frames: list[np.ndarray], names: list[str] | None = None) -> Path:
    """PNG files 00000.png, 00001.png, ... (or ``names``)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames):
        Image.fromarray(image).save(folder / (names[i] if names else f"{i:05d}.png"))
    return folder
