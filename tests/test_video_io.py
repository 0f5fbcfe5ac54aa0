"""Video in and out: common containers, streaming with bounded memory."""

import subprocess
import sys
import textwrap
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers import TINY_MODEL, synthetic_clip

from onedva_codec.video.io import VideoReader

INPUTS = [  # (extension, container format, codec, pixel format)
    (".mp4", "mp4", "libx264", "yuv420p"),
    (".mkv", "matroska", "ffv1", "bgr0"),
    (".webm", "webm", "libvpx-vp9", "yuv420p"),
    (".avi", "avi", "mpeg4", "yuv420p"),
    (".mov", "mov", "libx264", "yuv420p"),
    (".y4m", "yuv4mpegpipe", "rawvideo", "yuv420p"),
]


def _write_raw(path, frames, fps, fmt, codec, pix_fmt):
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("ext,fmt,codec,pix_fmt", INPUTS)
def test_common_inputs_are_read(tmp_path, ext, fmt, codec, pix_fmt):
    clip = synthetic_clip(12, 48, 64)
    path = _write_raw(tmp_path / f"clip{ext}", clip, Fraction(24), fmt, codec, pix_fmt)
    with VideoReader(path) as reader:
        frames = np.stack(list(reader.frames()))
        assert (reader.info.width, reader.info.height, reader.info.fps) == (64, 48, Fraction(24))
    assert frames.shape == clip.shape
    assert np.abs(frames.astype(int) - clip.astype(int)).mean() < 12  # lossy codecs stay close


def test_frames_are_ffmpegs_rgb_whatever_the_conversion_threads(tmp_path, monkeypatch):
    """The reader converts on several threads; a 4:4:4 .y4m (what `odva decode` writes) at an odd size
    reads as the same pixels as FFmpeg's one-thread conversion, on any thread count."""
    import onedva_codec.video.io as video_io

    path = _write_raw(tmp_path / "clip.y4m", synthetic_clip(5, 45, 67), Fraction(25), "yuv4mpegpipe",
                      "rawvideo", "yuv444p")
    with av.open(str(path)) as container:
        expected = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    for threads in (1, 3, 8):
        monkeypatch.setattr(video_io, "_CONVERSION_THREADS", threads)
        with VideoReader(path) as reader:
            assert np.array_equal(np.stack(list(reader.frames())), expected)


def _long_y4m(path, frames: int):
    clip = synthetic_clip(17, 64, 64)
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        stream = container.add_stream("rawvideo", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(clip[i % 17], format="rgb24")))
    return path


@pytest.mark.slow
def test_encode_and_decode_memory_does_not_grow_with_length(tmp_path):
    """Peak RSS of a whole `odva encode` + `odva decode`, for 200 and for 2000 frames (VmHWM, which starts
    afresh at exec, unlike getrusage's peak, which a child inherits from this test process)."""
    script = textwrap.dedent("""
        import sys
        from onedva_codec import Codec
        codec = Codec(sys.argv[1], device="cpu")
        codec.encode_file(sys.argv[2], sys.argv[3])
        codec.decode_file(sys.argv[3], sys.argv[4], steps=1)
        print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])  # KiB
    """)
    peaks = []
    for frames in (200, 2000):  # 2000 frames of 64 x 64 RGB are 23 MiB: growth would pass the 15 MiB allowed
        source = _long_y4m(tmp_path / f"v{frames}.y4m", frames)
        run = subprocess.run([sys.executable, "-c", script, str(TINY_MODEL), str(source),
                              str(tmp_path / f"v{frames}.odva"), str(tmp_path / f"v{frames}.mkv")],
                             capture_output=True, text=True, check=True)
        peaks.append(int(run.stdout.split()[-1]) / 1024)
    assert peaks[1] < peaks[0] + 15, f"peak RSS {peaks[0]:.0f} MiB -> {peaks[1]:.0f} MiB"


def test_a_variable_frame_rate_source_keeps_its_timing(tmp_path, codec):
    """Frames held for 1, 2 or 3 periods at 25 fps (times in ms): resampled by their timestamps, so the
    coded video lasts as long as the source, each frame in its slot, and the encoder says so."""
    times = [0, 40, 80, 160, 200, 320, 360, 380, 400]  # 380 ms rounds to 400's slot: dropped for it
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "bgr0"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, ms in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with VideoReader(path) as reader:
        levels = [int(f[0, 0, 0]) for f in reader.frames()]
        assert reader.info.fps == 25 and (reader.repeated, reader.dropped) == (3, 1)
    assert levels == [0, 20, 40, 40, 60, 80, 80, 80, 100, 120, 160]  # slots 0..10 of 40 ms
    result = codec.encode_file(path, tmp_path / "vfr.odva")
    assert result.frames == 11 and any("variable frame rate" in note for note in result.notes)

    constant = _write_raw(tmp_path / "cfr.mkv", synthetic_clip(9, 32, 32), Fraction(25), "matroska", "ffv1", "bgr0")
    result = codec.encode_file(constant, tmp_path / "cfr.odva")
    assert result.frames == 9 and result.notes == []
