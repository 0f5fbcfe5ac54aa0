"""The library API: encode and decode videos, files or arrays.

    codec = Codec()                                  # default weights, GPU if any
    codec.encode_file("in.mp4", "out.odva", RateOptions(quality=0.6))
    codec.decode_file("out.odva", "rec.mp4", steps=8)
    frames = codec.decode_array(codec.encode_array(frames, fps=Fraction(25)))

A Codec is a model (`model.folder.LoadedModel`: weights, card, entropy prior;
what a file depends on) and an engine (`runtime.engine.Engine`: devices, batch,
compilation, worker processes; how fast it runs). How a video becomes a file is
in coding/encoding.py, how a file becomes frames in coding/decoding.py; this
module reads and writes files and arrays around them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .bitstream.container import FileHeader, OdvaReader
from .bitstream.ratecontrol import RateOptions
from .coding.decoding import DecodeRequest, decode_frames
from .coding.encoding import EncodeRequest, EncodeResult, Progress, encode_frames
from .errors import InputError
from .model.folder import LoadedModel, load_model
from .runtime.engine import Engine
from .runtime.prefetch import prefetch
from .video.atomic import atomic_output
from .video.io import VideoReader, VideoWriter, check_mp4_preset, extract_audio, is_stdio, output_kind


ABANDON_AFTER_S = 0.5  # a stopped decode waits this long for the model call in flight, at most


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


class Codec:
    """An encoder and decoder bound to one model (`weights`: a model folder, default the shipped one, or a
    LoadedModel) and one device or several (see Engine for `device` and the other arguments)."""

    def __init__(self, weights: str | Path | LoadedModel | None = None, device: str = "auto",
                 batch_size: int | None = None, compile: bool = False, coding_workers: int | None = None,
                 device_noise: bool = False):
        self.model = weights if isinstance(weights, LoadedModel) else load_model(weights)  # the engine places it
        self.engine = Engine(self.model, device, batch_size, compile, coding_workers, device_noise)

    @property
    def devices(self) -> list[torch.device]:
        return self.engine.devices

    def close(self) -> None:
        """Stop the processes of several devices and of coding (they also stop when the program ends)."""
        self.engine.close()

    # ------------------------------------------------------------------ encode

    def encode_file(self, source: str | Path, destination: str | Path, rate: RateOptions = RateOptions(),
                    seed: int = 0, force: bool = False, progress: Progress | None = None,
                    search_steps: int = 0, scene_cuts: bool = True, key_interval: int | None = None
                    ) -> EncodeResult:
        """Encode a video file (or "-": YUV4MPEG2 on standard input) to .odva. `search_steps` > 0 refines
        every tile's latent by that many gradient steps through the decoder (coding/search.py): a slower
        encode, a better picture from the same decoder. `scene_cuts`: end a chunk where a shot ends
        (video/scenes.py), so that no chunk blends two shots; off, chunks are every 17 frames.
        `key_interval`: for a model whose chunks can depend on the one before (a temporal prior), a key
        chunk, which depends on none, every this many chunks (1: all; None: about every 4 seconds)."""
        source, destination = Path(source), Path(destination)
        with atomic_output(destination, force, source) as tmp, VideoReader(source) as reader:
            audio = io.BytesIO()
            audio_info = extract_audio(source, audio) if reader.info.has_audio and not is_stdio(source) else None
            info = reader.info
            request = EncodeRequest(info.width, info.height, info.fps, rate, seed, search_steps,
                                    audio.getvalue() if audio_info else None, vars(audio_info) if audio_info else None,
                                    scene_cuts, key_interval)
            with open(tmp, "wb") as out:
                result = encode_frames(self.model, self.engine, reader.frames(), request, out, progress)
            result.notes += [note for note in (reader.timing_note, reader.cut_note) if note]
            return result

    def encode_array(self, frames: np.ndarray, fps: Fraction | float,
                     rate: RateOptions = RateOptions(), seed: int = 0, search_steps: int = 0,
                     scene_cuts: bool = True, key_interval: int | None = None) -> bytes:
        """Encode (T, H, W, 3) uint8 RGB frames; returns the .odva file's bytes (`search_steps`, `scene_cuts`,
        `key_interval`: as encode_file)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
        out = io.BytesIO()
        request = EncodeRequest(frames.shape[2], frames.shape[1], Fraction(fps).limit_denominator(1001000), rate, seed,
                                search_steps, scene_cuts=scene_cuts, key_interval=key_interval)
        encode_frames(self.model, self.engine, iter(frames), request, out)
        return out.getvalue()

    # ------------------------------------------------------------------ decode

    def decode_file(self, source: str | Path, destination: str | Path, steps: int | None = None,
                    frame_range: tuple[int, int] | None = None, force: bool = False,
                    progress: Progress | None = None, mp4_preset: str = "medium") -> DecodeResult:
        """Decode to .mp4 (H.264), .mkv (FFV1, lossless) or .y4m, by the destination's extension; "-"
        writes YUV4MPEG2 to standard output. A reader that closes that pipe ends the decode early
        (`DecodeResult.notes` says so), not with an error. `mp4_preset`: libx264's preset for .mp4
        (`video.io.X264_PRESETS`; veryfast wrote 1080p 2.5 times as fast as medium, docs/performance.md)."""
        destination = Path(destination)
        kind = output_kind(destination)
        check_mp4_preset(mp4_preset, kind)
        started = time.perf_counter()
        notes: list[str] = []
        with OdvaReader(source) as reader:
            header = reader.header
            request = self._request(header, frame_range, steps)
            audio = reader.read_audio()
            if audio is not None and kind == ".y4m":
                notes.append("y4m holds no audio; the audio track was left out")
                audio = None
            output = contextlib.nullcontext(destination) if is_stdio(destination) else \
                atomic_output(destination, force, source)
            with output as path:
                count = self._write_frames(reader, request, path, kind, audio, progress, notes, mp4_preset)
        return DecodeResult(count, time.perf_counter() - started, notes)

    def _write_frames(self, reader: OdvaReader, request: DecodeRequest, path: Path, kind: str, audio: bytes | None,
                      progress: Progress | None, notes: list[str], mp4_preset: str) -> int:
        header = reader.header
        fps = header.fps
        writer = VideoWriter(path, kind, header.width, header.height, fps,
                             io.BytesIO(audio) if audio is not None else None,
                             start=float(request.first / fps), end=float(request.stop / fps), mp4_preset=mp4_preset)
        count = 0
        try:
            # The model runs in the background while this thread compresses and writes.
            frames = decode_frames(self.model, self.engine, reader, request, progress)
            # On Ctrl-C the model's thread is left to end at its next model call (prefetch.check_cancelled)
            for frame in prefetch(frames, depth=2 * header.chunk_frames, abandon_after=ABANDON_AFTER_S):
                writer.write(frame)
                count += 1
            writer.close()
        except BrokenPipeError:  # the reader of standard output has had enough
            writer.abort()
            devnull = os.open(os.devnull, os.O_WRONLY)  # nothing more can reach the reader: stdout goes nowhere
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            notes.append(f"the output pipe was closed after {count} frames; decoding stopped there")
        except BaseException:
            writer.abort()
            raise
        return count

    def decode_array(self, source: str | Path | bytes, steps: int | None = None,
                     frame_range: tuple[int, int] | None = None) -> np.ndarray:
        """Decode an .odva file (path or bytes) to a (T, H, W, 3) uint8 array."""
        with OdvaReader(source) as reader:
            reader.read_audio()  # unused here, but a damaged record is a damaged file, as the CLI says
            return np.stack(list(self.frames(reader, steps, frame_range)))

    def frames(self, reader: OdvaReader, steps: int | None = None, frame_range: tuple[int, int] | None = None
               ) -> Iterator[np.ndarray]:
        """The frames of an open .odva file (all, or `frame_range`: START, END exclusive), (H, W, 3) uint8 each,
        decoded as they are asked for."""
        return decode_frames(self.model, self.engine, reader, self._request(reader.header, frame_range, steps))

    def _request(self, header: FileHeader, frame_range: tuple[int, int] | None, steps: int | None) -> DecodeRequest:
        """The frames asked for, checked against the file, and the schedule: the model's, with `steps`."""
        first, stop = frame_range or (0, header.frames)
        if not 0 <= first < stop:
            raise InputError(f"frame range {first}:{stop}: END must be after START, and START 0 or more")
        if stop > header.frames:
            raise InputError(f"frame range {first}:{stop} is outside the video's {header.frames} frames")
        return DecodeRequest(first, stop, self.model.card.schedule(steps))
