"""Reading and writing video with PyAV, one frame at a time.

Frames are (H, W, 3) uint8 RGB arrays. The reader never holds more than the frame
it yields, so memory does not grow with the length of a video. Audio is carried
through untouched: at encode time its packets are remuxed into a Matroska
stream, which the writer remuxes into the output (or, for an MP4 that cannot
hold the codec, transcodes to AAC).
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import av
import numpy as np

from ..errors import InputError

# Output kinds by extension: (container format, video codec, codec options).
OUTPUT_FORMATS = {
    ".mp4": ("mp4", "libx264", {"crf": "12", "preset": "medium"}),  # visually lossless H.264
    ".mkv": ("matroska", "ffv1", {}),  # lossless
    ".y4m": ("yuv4mpegpipe", "rawvideo", {}),  # raw frames, no audio
}
# libx264's presets, fastest first: at CRF 12 they differ little in fidelity, a lot in speed
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_CONVERSION_THREADS = min(8, os.cpu_count() or 1)  # between RGB and YUV (the same pixels on any count)
_MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"}
_AUDIO_FALLBACK = ("aac", 192_000)


# "-" as a path: YUV4MPEG2 on standard input (encode) or standard output (decode), as x264,
# SVT-AV1, ffmpeg, ffplay and mpv read and write it.
STDIO = "-"


def is_stdio(path: str | Path) -> bool:
    return str(path) == STDIO


def output_kind(path: Path) -> str:
    """The extension that picks the output format, checked."""
    if is_stdio(path):
        return ".y4m"
    kind = path.suffix.lower()
    if kind not in OUTPUT_FORMATS:
        raise InputError(f"cannot write {path.name}: use a .mp4, .mkv or .y4m output")
    return kind


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    has_audio: bool
    frames_hint: int | None  # what the container declares, if anything; only for progress display


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _CountedInput(io.RawIOBase):
    """Standard input, counting the bytes read and keeping the first ones (the YUV4MPEG2 header line), so
    that a stream cut inside a frame, which the demuxer drops without a word, can be told (`cut`)."""

    FRAME_LINE = len(b"FRAME\n")  # what ffmpeg, x264 and odva write before each frame

    def __init__(self, raw: BinaryIO):
        self.raw, self.count, self.head = raw, 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        if len(self.head) < 512:
            self.head += data[: 512 - len(self.head)]
        self.count += len(data)
        return len(data)

    def cut(self, frames: int, payload: int) -> str | None:
        """Once the stream has ended after `frames` frames of `payload` bytes: a note if bytes of a
        further, incomplete frame were left over; None if it ended on a frame's end."""
        header = self.head.find(b"\n") + 1
        left = self.count - header - frames * self.FRAME_LINE - payload
        whole = self.FRAME_LINE + (payload // frames if frames else 0)
        if left <= 0 or (frames and left >= whole):  # frame lines with parameters: nothing to tell
            return None
        return (f"the YUV4MPEG2 stream on standard input ended inside frame {frames + 1} ({left} of its bytes "
                f"came); the {frames} whole frame(s) before it were encoded")


def _open_input(path: Path, stdin: BinaryIO | None = None) -> av.container.InputContainer:
    if is_stdio(path):
        try:
            return av.open(stdin or sys.stdin.buffer, format="yuv4mpegpipe")
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read standard input as YUV4MPEG2 ({_first_line(exc)}); pipe it in with "
                             "ffmpeg -i IN -f yuv4mpegpipe -") from None
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a video file")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: not a video file ({_first_line(exc)})") from None


class VideoReader:
    """Streams the first video track of a file as RGB frames."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stdin = _CountedInput(sys.stdin.buffer) if is_stdio(self.path) else None
        self._container = _open_input(self.path, self._stdin)
        self.cut_note: str | None = None  # set by `frames` when a YUV4MPEG2 stream ended inside a frame
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.path} has no video track")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        if not rate or rate <= 0:
            self._container.close()
            raise InputError(f"cannot tell the frame rate of {self.path}")
        if width <= 0 or height <= 0:
            self._container.close()
            raise InputError(f"{self.path} has a video track with no frame size")
        self._stream = stream
        self.repeated = self.dropped = 0  # by `frames`, to keep a variable-rate source's timing
        self.info = VideoInfo(width, height, Fraction(rate), bool(self._container.streams.audio),
                              stream.frames or None)

    def frames(self) -> Iterator[np.ndarray]:
        """The frames at the constant rate `info.fps`, timed by their timestamps: a frame is repeated
        where the source holds it longer than one frame period and dropped where a later one takes its
        slot, so that a variable-frame-rate source keeps its duration and its sync with the audio.
        A constant-rate source comes through frame for frame (`repeated` and `dropped` stay 0)."""
        index = emitted = 0
        pending, start = None, None
        try:
            for frame in self._decoded():
                if (frame.width, frame.height) != (self.info.width, self.info.height):
                    frame = frame.reformat(width=self.info.width, height=self.info.height)
                if frame.time is None:  # no timestamp: the next slot
                    slot = emitted + (pending is not None)
                else:
                    start = frame.time if start is None else start
                    slot = round((frame.time - start) * self.info.fps)
                if pending is not None:
                    if slot > emitted:
                        for _ in range(slot - emitted):
                            yield pending
                        self.repeated += slot - emitted - 1
                        emitted = slot
                    else:  # the new frame takes the pending one's slot
                        self.dropped += 1
                # swscale's 4:4:4-to-RGB path has no SIMD (9 ms a 1080p frame on one thread: the bound of a
                # whole encode from .y4m); slices on several threads give the same pixels
                pending = frame.reformat(format="rgb24", threads=_CONVERSION_THREADS).to_ndarray()
                index += 1
            if pending is not None:
                yield pending
        except av.FFmpegError as exc:
            raise InputError(f"cannot decode frame {index} of {self.path}: {_first_line(exc)}") from None

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """The track's frames; from standard input, its payload is counted to tell a cut stream."""
        frames = payload = 0
        for packet in self._container.demux(self._stream):
            payload += packet.size
            for frame in packet.decode():
                frames += 1
                yield frame
        if self._stdin is not None:
            self.cut_note = self._stdin.cut(frames, payload)

    @property
    def timing_note(self) -> str | None:
        """What `frames` did to a variable-frame-rate source, in one line; None if nothing."""
        if not (self.repeated or self.dropped):
            return None
        return (f"{self.path.name} has a variable frame rate; it was resampled to a constant "
                f"{float(self.info.fps):.4g} fps by its timestamps ({self.repeated} frame(s) repeated, "
                f"{self.dropped} dropped), keeping its duration and audio sync")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def extract_audio(path: str | Path, out: BinaryIO) -> AudioInfo | None:
    """Remux the first audio track of `path` into Matroska on `out`; None if there is none."""
    with _open_input(Path(path)) as container:
        if not container.streams.audio:
            return None
        source = container.streams.audio[0]
        ctx = source.codec_context
        info = AudioInfo(ctx.name, ctx.sample_rate, ctx.channels)
        try:
            with av.open(out, "w", format="matroska") as sink:
                target = sink.add_stream_from_template(source)
                for packet in container.demux(source):
                    if packet.dts is None:  # demuxer flush packet
                        continue
                    packet.stream = target
                    sink.mux(packet)
        except av.FFmpegError as exc:
            raise InputError(f"cannot carry the audio of {path}: {_first_line(exc)}") from None
        return info


class _AudioTrack:
    """Feeds audio packets from a Matroska source into an output, in step with the video."""

    def __init__(self, source: BinaryIO, sink: av.container.OutputContainer, start: float, end: float | None):
        self._container = av.open(source, "r", format="matroska")
        self._source = self._container.streams.audio[0]
        self._packets = (p for p in self._container.demux(self._source) if p.dts is not None)
        self._start, self._end = start, end
        self._transcode = sink.format.name == "mp4" and self._source.codec_context.name not in _MP4_AUDIO_CODECS
        if self._transcode:
            codec, bit_rate = _AUDIO_FALLBACK
            self._target = sink.add_stream(codec, rate=self._source.codec_context.sample_rate)
            self._target.layout = self._source.codec_context.layout
            self._target.bit_rate = bit_rate
            self._resampler = av.AudioResampler(format="fltp", layout=self._target.layout,
                                                rate=self._target.rate)
        else:
            self._target = sink.add_stream_from_template(self._source)
        self._sink = sink
        self._pending: av.Packet | None = None
        self._offset = round(start / self._source.time_base)

    def write_until(self, seconds: float | None) -> None:
        """Mux packets that start before `seconds` of output time (None: all that remain)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            time = float(packet.pts * packet.time_base) - self._start
            if self._end is not None and time >= self._end - self._start:
                return
            if seconds is not None and time >= seconds:
                self._pending = packet
                return
            if time < 0:
                continue
            if self._transcode:
                for frame in self._source.codec_context.decode(packet):
                    frame.pts = None
                    for resampled in self._resampler.resample(frame):
                        self._sink.mux(self._target.encode(resampled))
            else:
                packet.pts -= self._offset
                packet.dts -= self._offset
                packet.stream = self._target
                self._sink.mux(packet)

    def finish(self) -> None:
        self.write_until(None)
        if self._transcode:
            for resampled in self._resampler.resample(None):
                self._sink.mux(self._target.encode(resampled))
            self._sink.mux(self._target.encode(None))
        self._container.close()


class VideoWriter:
    """Writes RGB frames to `path` in the format its extension names.

    `kind` is the extension that picks the format (the path itself may be a temp
    file). `audio` is a Matroska audio stream as made by `extract_audio`; `start`
    and `end` (seconds) cut it to the frames written. `mp4_preset` is libx264's
    preset for .mp4 (one of X264_PRESETS; see `check_mp4_preset`).
    """

    def __init__(self, path: str | Path, kind: str, width: int, height: int, fps: Fraction,
                 audio: BinaryIO | None = None, start: float = 0.0, end: float | None = None,
                 mp4_preset: str = "medium"):
        check_mp4_preset(mp4_preset, kind)
        fmt, codec, options = OUTPUT_FORMATS[kind]
        options = {**options, "preset": mp4_preset} if kind == ".mp4" else options
        self._container = av.open(sys.stdout.buffer if is_stdio(path) else str(path), "w", format=fmt)
        self._stream = self._container.add_stream(codec, rate=fps, options=options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = _pixel_format(kind, width, height)
        self._fps = fps
        self._audio = _AudioTrack(audio, self._container, start, end) if audio is not None else None
        self._count = 0

    def write(self, frame: np.ndarray) -> None:
        if self._audio is not None:
            self._audio.write_until(float((self._count + 1) / self._fps))
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        # the encoder would convert on one thread; at 1080p that alone can hold a GPU decoder back
        video_frame = video_frame.reformat(format=self._stream.pix_fmt, threads=_CONVERSION_THREADS)
        video_frame.pts = self._count
        video_frame.time_base = 1 / self._fps
        self._container.mux(self._stream.encode(video_frame))
        self._count += 1

    def close(self) -> None:
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            self._audio.finish()
        self._container.close()

    def abort(self) -> None:
        """Close without flushing, after an error; the caller discards the file (or the pipe is gone)."""
        try:
            self._container.close()
        except (OSError, av.FFmpegError):
            pass


def check_mp4_preset(preset: str, kind: str) -> None:
    """A preset names one of libx264's, and only .mp4 output has one (the default, medium, passes anywhere)."""
    if preset not in X264_PRESETS:
        raise InputError(f"unknown H.264 preset {preset!r}: use one of {', '.join(X264_PRESETS)}")
    if preset != "medium" and kind != ".mp4":
        raise InputError(f"an H.264 preset applies to .mp4 output only, not {kind}")


def _pixel_format(kind: str, width: int, height: int) -> str:
    if kind == ".mkv":
        return "bgr0"  # FFV1 stores this losslessly; its planar RGB refuses our sizes
    if kind == ".y4m":
        return "yuv444p"
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"  # 4:2:0 needs even sizes
