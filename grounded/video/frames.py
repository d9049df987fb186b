"""Video frames as a stream: a video file (PyAV, FFmpeg inside the wheel) or a folder of numbered images.

::

    source = open_video("clip.mp4")            # or a folder: 00000.jpg, 00001.jpg, ...
    source.info                                 # VideoInfo: width, height, fps, frame_count, rotation, ...
    for index, frame in source.frames(start=0): # RGB uint8 (H, W, 3), display orientation, one at a time
        ...

Only one decoded frame is held at a time, so memory does not grow with the video's length. Frames are
numbered from 0 in presentation order (a folder: by the number in each file name).

**Display orientation** (as for photos, :mod:`grounded.utils.images`): a file whose stream carries rotation
metadata (phones record portrait video as landscape + a display matrix) is rotated upright, by multiples of
90 degrees; every mask, box and export is in that orientation (``info.rotation`` says what was applied).

Bad input is refused with a :class:`VideoError` (an :class:`~grounded.errors.InputError`) naming the input
and the fix, before any model runs where the header can tell, otherwise at the frame that fails:

- a missing path, a file FFmpeg cannot open (corrupt, not a video), a file whose index is cut off;
- no video stream (audio only), zero frames, a frame that fails to decode, fewer frames than the container
  indexes (a truncated file: the error comes after the last good frame);
- variable frame rate (the frame times are not evenly spaced: frame numbers would not map to times; pass
  ``allow_vfr=True`` to number frames in order anyway, or re-encode at a constant rate);
- a rotation that is not a multiple of 90 degrees, or a mirrored display matrix;
- frames smaller than :data:`MIN_SIDE` pixels on a side, or more pixels than ``max_pixels`` (8K UHD by
  default: 4K video is read as is);
- a frame folder with no numbered images, two files with one number, a gap in the numbers (the missing
  numbers are named), images of different sizes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from grounded.errors import InputError
from grounded.utils.images import IMAGE_EXTENSIONS, image_size, load_image

MIN_SIDE = 16  # pixels: the smallest frame side accepted
MAX_PIXELS = 7680 * 4320  # 8K UHD; 4K (3840 x 2160) and below pass
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".gif")
VFR_TOLERANCE = 0.25  # a frame interval further than this fraction from the median one means variable frame rate
_REENCODE = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -fps_mode cfr OUT.mp4`"


class VideoError(InputError):
    """A video file or frame folder that cannot be read as a stream of frames (the message says why)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, from its header (a folder: from its files). Sizes are in display orientation."""

    path: str
    kind: str  # "file", "frames" (a folder) or "array" (in memory)
    width: int
    height: int
    frame_count: int  # frames indexed by the container (a folder: image files)
    fps: float | None  # frames per second (None for a folder of frames)
    codec: str | None = None
    rotation: int = 0  # degrees counter-clockwise applied to show frames upright (0, 90, 180, -90)
    first_number: int = 0  # a folder: the number in the first file's name (frame 0)

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "width": self.width, "height": self.height,
                "frame_count": self.frame_count, "fps": self.fps, "codec": self.codec, "rotation": self.rotation,
                "first_number": self.first_number}


def _check_size(name: str, width: int, height: int, max_pixels: int | None) -> None:
    if min(width, height) < MIN_SIDE:
        raise VideoError(f"{name}: frames are {width}x{height} pixels; at least {MIN_SIDE} on each side are needed "
                         f"(scale it up first)")
    if max_pixels and width * height > max_pixels:
        raise VideoError(f"{name}: frames are {width}x{height} ({width * height / 1e6:.1f} M pixels), over the "
                         f"{max_pixels / 1e6:.1f} M pixel limit; downscale it (`ffmpeg -i IN -vf scale=3840:-2 OUT.mp4`) "
                         f"or raise max_pixels")


class VideoSource:
    """A stream of RGB frames; see :func:`open_video`. ``frames(start)`` can be called again (re-reads)."""

    info: VideoInfo

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB uint8 (H, W, 3)) for every frame from ``start`` on, in order, one decoded at a time."""
        raise NotImplementedError


class VideoFile(VideoSource):
    """A video file read with PyAV (the header and packet index are read when opened; frames on demand)."""

    def __init__(self, path: str | Path, *, max_pixels: int | None = MAX_PIXELS, allow_vfr: bool = False) -> None:
        self.path = Path(path)
        self.name = str(path)
        av = _require_av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    kinds = sorted({s.type for s in container.streams}) or ["nothing"]
                    raise VideoError(f"{self.name}: no video stream (it holds {', '.join(kinds)}); give a file with "
                                     f"video in it")
                stream = container.streams.video[0]
                codec = stream.codec_context.name
                times = self._packet_times(container, stream)
                declared = int(stream.frames or 0)  # the container's own count, where it keeps one (MP4, MOV)
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                width, height = stream.codec_context.width, stream.codec_context.height
        except VideoError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise VideoError(f"{self.name}: not a video FFmpeg can read ({type(exc).__name__}: "
                             f"{_first_line(exc)}); the file is corrupt or truncated, or not a video: "
                             f"{_REENCODE}") from None
        if not times:
            raise VideoError(f"{self.name}: the video stream has zero frames; give a video with at least one frame")
        if declared > len(times):
            raise VideoError(f"{self.name}: its index lists {declared} frames but only {len(times)} are in the file: "
                             f"it is truncated; {_REENCODE}")
        if not allow_vfr:
            _check_constant_rate(self.name, times)
        rotation = self._rotation(av)
        if rotation in (90, -90):
            width, height = height, width
        _check_size(self.name, width, height, max_pixels)
        self.info = VideoInfo(str(self.path), "file", int(width), int(height), len(times),
                              float(rate) if rate else None, codec, rotation)

    def _packet_times(self, container: Any, stream: Any) -> list[int]:
        """Presentation times of every video packet (demuxed, not decoded: fast), sorted."""
        times = []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream flush packet
                continue
            times.append(packet.pts if packet.pts is not None else (times[-1] + 1 if times else 0))
        return sorted(times)

    def _rotation(self, av: Any) -> int:
        """Degrees counter-clockwise the display matrix rotates frames, from the first frame (0 if none)."""
        try:
            with av.open(str(self.path)) as container:
                frame = next(container.decode(video=0), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.name}: frame 0 cannot be decoded ({_first_line(exc)}); {_REENCODE}") from None
        if frame is None:
            raise VideoError(f"{self.name}: no frame could be decoded (zero frames or a damaged stream); {_REENCODE}")
        display = {str(getattr(item, "type", "")).upper() for item in getattr(frame, "side_data", [])}
        rotation = int(round(getattr(frame, "rotation", 0) or 0))
        if rotation % 90 != 0:
            raise VideoError(f"{self.name}: its display matrix rotates frames by {rotation} degrees; only multiples "
                             f"of 90 are supported: {_REENCODE}")
        if rotation != 0 or "DISPLAYMATRIX" in display:
            self._check_no_mirror(frame, rotation)
        return 180 if rotation == -180 else rotation

    def _check_no_mirror(self, frame: Any, rotation: int) -> None:
        """A display matrix with a flip (mirrored video) is refused: it would need more than a rotation."""
        for item in getattr(frame, "side_data", []):
            if "DISPLAYMATRIX" not in str(getattr(item, "type", "")).upper():
                continue
            matrix = np.frombuffer(bytes(item), dtype=np.int32)[:9].astype(np.float64).reshape(3, 3) / 65536.0
            if np.linalg.det(matrix[:2, :2]) < 0:
                raise VideoError(f"{self.name}: its display matrix mirrors the frames; only rotations are supported: "
                                 f"{_REENCODE}")

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        av = _require_av()
        k = round(self.info.rotation / 90)
        index = 0
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    if index >= start:
                        rgb = frame.to_ndarray(format="rgb24")
                        yield index, (np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
                    index += 1
            except av.error.FFmpegError as exc:
                raise VideoError(f"{self.name}: decoding failed after frame {index - 1} of {self.info.frame_count} "
                                 f"({_first_line(exc)}); the file is damaged from there on: {_REENCODE}") from None
        if index < self.info.frame_count:
            raise VideoError(f"{self.name}: only {index} of the {self.info.frame_count} frames its index lists could "
                             f"be decoded: the file is truncated or damaged; {_REENCODE}")


def _check_constant_rate(name: str, times: list[int]) -> None:
    """Refuse variable frame rate: frame intervals (pts ticks) further than VFR_TOLERANCE from the median."""
    if len(times) < 3:
        return
    deltas = np.diff(np.asarray(times, dtype=np.int64))
    median = float(np.median(deltas))
    if median <= 0:
        raise VideoError(f"{name}: frames share timestamps (broken timing); {_REENCODE}")
    off = np.abs(deltas - median) > VFR_TOLERANCE * median
    if off.any():
        first = int(np.argmax(off))
        raise VideoError(f"{name}: variable frame rate (frame {first + 1} comes {deltas[first] / median:.2f} frame "
                         f"intervals after frame {first}); frame numbers would not match times. Re-encode at a "
                         f"constant rate (`ffmpeg -i IN -fps_mode cfr -r 30 OUT.mp4`) or pass allow_vfr=True "
                         f"(--allow-vfr) to number the frames in order anyway")


class FrameFolder(VideoSource):
    """A folder of images numbered in their names (``00000.jpg``, ``frame_12.png``): frame i = i-th number."""

    def __init__(self, path: str | Path, *, max_pixels: int | None = MAX_PIXELS) -> None:
        self.path = Path(path)
        self.name = str(path)
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise VideoError(f"{self.name}: a folder with no images ({', '.join(IMAGE_EXTENSIONS)}); give a video file "
                             f"or a folder of numbered frames (00000.jpg, 00001.jpg, ...)")
        numbered: dict[int, Path] = {}
        for path_ in files:
            digits = re.findall(r"\d+", path_.stem)
            if not digits:
                raise VideoError(f"{self.name}: {path_.name!r} has no frame number in its name; name frames "
                                 f"00000.jpg, 00001.jpg, ...")
            number = int(digits[-1])
            if number in numbered:
                raise VideoError(f"{self.name}: {numbered[number].name!r} and {path_.name!r} both have frame number "
                                 f"{number}; keep one")
            numbered[number] = path_
        numbers = sorted(numbered)
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise VideoError(f"{self.name}: frame numbers {numbers[0]}..{numbers[-1]} have gaps (missing {shown}); "
                             f"a gap would shift every later frame: fill or renumber the frames")
        self.files = [numbered[n] for n in numbers]
        height, width = image_size(self.files[0])
        _check_size(self.name, width, height, max_pixels)
        self.max_pixels = max_pixels
        self.info = VideoInfo(str(self.path), "frames", int(width), int(height), len(self.files), None, None, 0,
                              numbers[0])

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(start, len(self.files)):
            frame = load_image(self.files[index], name=str(self.files[index]), max_pixels=self.max_pixels)
            if frame.shape[:2] != self.info.hw:
                raise VideoError(f"{self.name}: {self.files[index].name} is {frame.shape[1]}x{frame.shape[0]}, frame 0 "
                                 f"is {self.info.width}x{self.info.height}; all frames must have one size")
            yield index, frame


class FrameArray(VideoSource):
    """Frames already in memory: a sequence of RGB uint8 (H, W, 3) arrays of one size (or a (T, H, W, 3) array)."""

    def __init__(self, frames: Any, fps: float | None = None, name: str = "<frames>") -> None:
        self.array = frames
        self.name = name
        if len(frames) == 0:
            raise VideoError(f"{name}: zero frames; give at least one frame")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise VideoError(f"{name}: frames must be RGB uint8 arrays (H, W, 3), got {first.dtype} {first.shape}")
        _check_size(name, first.shape[1], first.shape[0], None)
        self.info = VideoInfo(name, "array", int(first.shape[1]), int(first.shape[0]), len(frames), fps)

    def frames(self, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(start, len(self.array)):
            frame = np.asarray(self.array[index])
            if frame.shape != (self.info.height, self.info.width, 3) or frame.dtype != np.uint8:
                raise VideoError(f"{self.name}: frame {index} is {frame.dtype} {frame.shape}, frame 0 is uint8 "
                                 f"{(self.info.height, self.info.width, 3)}; all frames must be alike")
            yield index, frame


def open_video(path: str | Path, *, max_pixels: int | None = MAX_PIXELS, allow_vfr: bool = False) -> VideoSource:
    """A :class:`VideoFile` or :class:`FrameFolder` for ``path``; a :class:`VideoError` when it is unusable."""
    p = Path(path)
    if not os.path.lexists(p):
        raise VideoError(f"video {str(path)!r} not found; give a video file or a folder of numbered frames")
    if p.is_dir():
        return FrameFolder(p, max_pixels=max_pixels)
    if not p.is_file():
        raise VideoError(f"video {str(path)!r} is not a regular file (a dangling link or a special file)")
    if p.stat().st_size == 0:
        raise VideoError(f"video {str(path)!r} is an empty file (0 bytes)")
    return VideoFile(p, max_pixels=max_pixels, allow_vfr=allow_vfr)


def is_video_path(path: Path) -> bool:
    """A file named like a video (by extension)."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _require_av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError('reading video files needs PyAV, which is not installed: pip install "grounded[video]" '
                         "(or give a folder of numbered frames)") from None
    return av


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def frame_rate(info: VideoInfo, default: float = 30.0) -> Fraction:
    """The rate to write derived videos at: the source's (to 1/1000 fps), else ``default``."""
    return Fraction(info.fps or default).limit_denominator(1000)
