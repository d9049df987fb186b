"""Frames streamed from video files (clips written here with PyAV, and the real bedroom clip) and frame folders;
every kind of bad input gets a VideoError that names it."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from video_scenes import scene, write_clip, write_frames

from grounded.errors import InputError
from grounded.video.frames import MAX_PIXELS, FrameArray, VideoError, open_video

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def frames():
    return scene(frames=12)[0]


def test_lossless_clip_streams_every_frame_exactly(tmp_path, frames):
    source = open_video(write_clip(tmp_path / "clip.mkv", frames, fps=10))
    info = source.info
    assert (info.kind, info.width, info.height, info.frame_count, info.fps, info.codec, info.rotation) == (
        "file", 96, 64, 12, 10.0, "ffv1", 0)
    got = list(source.frames())
    assert [i for i, _ in got] == list(range(12))
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, frames, strict=True))
    later = list(source.frames(start=9))  # a second pass, from frame 9
    assert [i for i, _ in later] == [9, 10, 11] and np.array_equal(later[0][1], frames[9])


def test_h264_clip_decodes_close_to_its_source(tmp_path, frames):
    source = open_video(write_clip(tmp_path / "clip.mp4", frames, codec="libx264", pix_fmt="yuv420p"))
    got = [f for _, f in source.frames()]
    assert source.info.codec == "h264" and len(got) == 12
    error = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(got, frames, strict=True)])
    assert error < 8.0  # lossy, but the same pictures


def test_bedroom_clip_and_its_frame_folder(shared):
    video = open_video(shared("video", "bedroom.mp4"))
    assert (video.info.width, video.info.height, video.info.frame_count, video.info.fps) == (960, 540, 200, 30.0)
    tail = list(video.frames(start=197))
    assert [i for i, _ in tail] == [197, 198, 199] and tail[0][1].shape == (540, 960, 3)
    folder = open_video(shared("video", "bedroom_frames"))
    assert (folder.info.kind, folder.info.frame_count, folder.info.hw, folder.info.fps) == ("frames", 30, (540, 960), None)
    first_file = next(folder.frames())[1]
    first_video = next(video.frames())[1]
    assert np.abs(first_file.astype(int) - first_video.astype(int)).mean() < 12  # the same picture, two encodings


def test_rotation_metadata_is_applied(tmp_path, frames):
    source = open_video(write_clip(tmp_path / "rot.mkv", frames[:3], rotation=90))
    assert source.info.rotation == 90 and source.info.hw == (96, 64)  # portrait: width and height swapped
    first = next(source.frames())[1]
    assert np.array_equal(first, np.rot90(frames[0], 1))  # counter-clockwise, as the display matrix says


def test_odd_sizes_and_4k_are_read(tmp_path):
    odd = [np.full((17, 33, 3), v, dtype=np.uint8) for v in (10, 200)]
    source = open_video(write_clip(tmp_path / "odd.mkv", odd))
    assert source.info.hw == (17, 33) and [f.shape for _, f in source.frames()] == [(17, 33, 3)] * 2
    big = [np.zeros((2160, 3840, 3), dtype=np.uint8)] * 2
    source = open_video(write_clip(tmp_path / "4k.mp4", big, codec="libx264", pix_fmt="yuv420p"))
    assert source.info.hw == (2160, 3840) and len(list(source.frames())) == 2


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "truncated", "truncated_late", "audio_only", "zero_frames", "vfr",
                                  "tiny", "too_large"])
def test_bad_files_are_refused_with_a_reason(tmp_path, frames, case):
    path = tmp_path / "bad.mkv"
    expected = {"missing": "not found", "empty": "empty file", "corrupt": "not a video FFmpeg can read",
                "truncated": "truncated", "truncated_late": "lists 12 frames but only", "audio_only": "no video stream", "zero_frames": "zero frames",
                "vfr": "variable frame rate", "tiny": "at least 16", "too_large": "pixel limit"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif case == "truncated":
        data = write_clip(tmp_path / "whole.mp4", frames, codec="libx264", pix_fmt="yuv420p").read_bytes()
        path = tmp_path / "cut.mp4"
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated_late":  # the index up front (faststart), the last frames' data cut off
        whole = tmp_path / "whole.mp4"
        with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        path = tmp_path / "cut.mp4"
        path.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.9)])
    elif case in ("audio_only", "zero_frames"):  # sound only; or a video stream without a frame, beside sound
        path = tmp_path / ("sound.wav" if case == "audio_only" else "silent.mkv")
        with av.open(str(path), "w") as container:
            if case == "zero_frames":
                video = container.add_stream("ffv1", rate=10)
                video.width, video.height, video.pix_fmt = 32, 32, "bgr0"
            stream = container.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            for packet in list(stream.encode(frame)) + list(stream.encode()):
                container.mux(packet)
    elif case == "vfr":
        write_clip(path, frames, pts=[0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13])  # a 3-tick gap: not constant
    elif case == "tiny":
        write_clip(path, [np.zeros((8, 8, 3), dtype=np.uint8)] * 2)
    elif case == "too_large":
        path = write_frames(tmp_path / "huge", [np.zeros((4400, 7800, 3), dtype=np.uint8)])
    with pytest.raises(VideoError, match=expected) as error:
        source = open_video(path)
        list(source.frames())  # some faults (a truncated stream) show only while decoding
    assert isinstance(error.value, InputError) and (str(path) in str(error.value) or case == "missing")
    if case == "too_large":
        assert 7800 * 4400 > MAX_PIXELS


def test_vfr_can_be_numbered_in_order_when_asked(tmp_path, frames):
    path = write_clip(tmp_path / "vfr.mkv", frames, pts=[0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13])
    source = open_video(path, allow_vfr=True)
    assert [i for i, _ in source.frames()] == list(range(12))


@pytest.mark.parametrize("names, expected", [
    (["0.png", "1.png", "3.png", "4.png"], "missing 2"),
    (["f1.png", "f01.png"], "both have frame number 1"),
    (["a.png", "b.png"], "no frame number"),
])
def test_frame_folder_faults(tmp_path, frames, names, expected):
    folder = write_frames(tmp_path / "frames", frames[: len(names)], names=names)
    with pytest.raises(VideoError, match=expected):
        open_video(folder)


def test_frame_folder_numbering_and_sizes(tmp_path, frames):
    folder = write_frames(tmp_path / "frames", frames[:3], names=["img_7.png", "img_8.png", "img_9.png"])
    source = open_video(folder)
    assert source.info.first_number == 7 and [i for i, _ in source.frames()] == [0, 1, 2]
    write_frames(folder, [np.zeros((10, 10, 3), np.uint8)] * 1, names=["img_10.png"])
    with pytest.raises(VideoError, match="all frames must have one size"):
        list(open_video(folder).frames())
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(VideoError, match="no images"):
        open_video(empty)


def test_frames_in_memory(frames):
    source = FrameArray(frames, fps=Fraction(25))
    assert source.info.frame_count == 12 and next(source.frames(start=5))[0] == 5
    with pytest.raises(VideoError, match="RGB uint8"):
        FrameArray([np.zeros((20, 20), np.uint8)])
    with pytest.raises(VideoError, match="zero frames"):
        FrameArray([])
