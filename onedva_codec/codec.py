"""The library API: encode and decode videos, files or arrays.

    codec = Codec()                                  # default weights, GPU if any
    codec.encode_file("in.mp4", "out.odva", RateOptions(quality=0.6))
    codec.decode_file("out.odva", "rec.mp4", steps=8)
    frames = codec.decode_array(codec.encode_array(frames, fps=Fraction(25)))

Encoding runs in two passes over the latents but only one over the video and the
encoder: each tile of each chunk (a "unit") is encoded once at full length, its
symbols are spooled to a temporary file, and rate control, which needs the whole
video's motion scores (and, for --bitrate, the coded size of every unit at every
length), then decides how many 1D tokens each unit keeps. Memory stays bounded by
a batch of units whatever the length of the video.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .atomic import atomic_output
from .container import ChunkRecord, FileHeader, OdvaReader, OdvaWriter, TileRecord, container_overhead
from .errors import FormatError, InputError
from .geometry import TileGrid, chunk_frames
from .latent_coding import ENTROPY_CODER, Quantizer, TileCoder, coded_size_bound
from .model import Latents, geometry_features
from .motion import motion_scores, normalise_motion
from .pixels import model_to_video, video_to_model
from .ratecontrol import RateOptions, length_grid, lengths_for_bitrate, lengths_for_quality
from .sampler import sample
from .prefetch import prefetch
from .video_io import VideoReader, VideoWriter, extract_audio, output_kind
from .weights import LoadedModel, check_decodable, load_model

Progress = Callable[[int], None]  # called with the number of frames just done


@dataclass
class EncodeResult:
    frames: int
    width: int
    height: int
    fps: Fraction
    bytes: int
    seconds: float  # wall-clock time of the encode
    kept_share: float  # mean share of 1D tokens kept
    notes: list[str] = field(default_factory=list)  # things the user should know

    @property
    def bitrate(self) -> float:
        return self.bytes * 8 / float(self.frames / self.fps)

    @property
    def bpp(self) -> float:
        return self.bytes * 8 / (self.frames * self.width * self.height)


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


def unit_noise(seed: int, chunk: int, tile: int, shape: tuple[int, ...]) -> Tensor:
    """The starting noise of one unit: fixed by the file's seed, independent of batching and device."""
    digest = hashlib.blake2b(f"{seed}:{chunk}:{tile}".encode(), digest_size=8).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
    return torch.randn(shape, generator=generator)


@dataclass
class _Analysis:
    """What the first pass learns: per-unit facts plus the spooled symbols."""

    motion: np.ndarray  # normalised, per unit
    sizes: np.ndarray | None  # coded bytes per unit per length_grid entry (--bitrate only)
    real_frames: list[int]  # per chunk
    spool: BinaryIO

    @property
    def frames(self) -> int:
        return sum(self.real_frames)


class Codec:
    """An encoder and decoder bound to one model and one device."""

    def __init__(self, weights: str | Path | LoadedModel | None = None, device: str = "auto",
                 batch_size: int | None = None):
        self.device = resolve_device(device)
        self.loaded = weights if isinstance(weights, LoadedModel) else load_model(weights, self.device)
        self.loaded.model.to(self.device)
        self.cfg = self.loaded.card.config
        self.tile_coder = TileCoder(self.loaded.prior)
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 4)
        if self.batch_size < 1:
            raise InputError("batch size must be at least 1")

    # ------------------------------------------------------------------ encode

    def encode_file(self, source: str | Path, destination: str | Path, rate: RateOptions = RateOptions(),
                    seed: int = 0, force: bool = False, progress: Progress | None = None) -> EncodeResult:
        source, destination = Path(source), Path(destination)
        if source.resolve() == destination.resolve():
            raise InputError("the output would overwrite the input")
        with atomic_output(destination, force) as tmp, VideoReader(source) as reader:
            audio = io.BytesIO()
            audio_info = extract_audio(source, audio) if reader.info.has_audio else None
            info = reader.info
            with open(tmp, "wb") as out:
                return self._encode(reader.frames(), info.width, info.height, info.fps, out, rate, seed,
                                    audio.getvalue() if audio_info else None,
                                    vars(audio_info) if audio_info else None, progress)

    def encode_array(self, frames: np.ndarray, fps: Fraction | float,
                     rate: RateOptions = RateOptions(), seed: int = 0) -> bytes:
        """Encode (T, H, W, 3) uint8 RGB frames; returns the .odva file's bytes."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
        out = io.BytesIO()
        self._encode(iter(frames), frames.shape[2], frames.shape[1], Fraction(fps).limit_denominator(1001000),
                     out, rate, seed, None, None, None)
        return out.getvalue()

    def _encode(self, frames: Iterator[np.ndarray], width: int, height: int, fps: Fraction, out: BinaryIO,
                rate: RateOptions, seed: int, audio: bytes | None, audio_info: dict | None,
                progress: Progress | None) -> EncodeResult:
        started = time.perf_counter()
        grid = TileGrid.plan(height, width, self.cfg.tile, self.cfg.tile_overlap)
        with tempfile.TemporaryFile() as spool:
            analysis = self._analyse(frames, grid, spool, with_sizes=rate.bitrate is not None, progress=progress)
            header = self._header(width, height, fps, analysis.frames, grid, seed, rate, audio_info)
            n_max = self.cfg.max_1d_tokens
            notes: list[str] = []
            if rate.bitrate is not None:
                lengths, written, note = self._write_for_bitrate(out, header, analysis, rate, audio, grid.count)
                notes += [note] if note else []
            else:
                lengths = lengths_for_quality(analysis.motion, rate.quality, n_max, rate.adaptive)
                written = self._write(out, header, analysis, lengths, grid.count, audio)
        return EncodeResult(analysis.frames, width, height, fps, written, time.perf_counter() - started,
                            float(lengths.mean() / n_max), notes)

    def _analyse(self, frames: Iterator[np.ndarray], grid: TileGrid, spool: BinaryIO, with_sizes: bool,
                 progress: Progress | None) -> _Analysis:
        cfg, card = self.cfg, self.loaded.card
        quantizer = self._quantizer()
        content_h, content_w = grid.content_size
        grid_lengths = length_grid(cfg.max_1d_tokens)
        motion: list[float] = []
        sizes: list[list[int]] = []
        real_frames: list[int] = []
        pending_tiles: list[Tensor] = []
        pending_real: list[int] = []  # real frames of each pending tile's chunk

        def flush() -> None:
            tiles = torch.stack(pending_tiles)
            real = torch.tensor(pending_real, device=self.device)
            geometry = geometry_features(torch.full_like(real, content_h), torch.full_like(real, content_w), real, cfg)
            with torch.no_grad(), self._autocast():
                posterior = self.loaded.model.encode(tiles, geometry)
            symbols = quantizer.quantize(posterior.means())
            symbols = symbols.cpu().numpy()
            spool.write(symbols.tobytes())
            scores = normalise_motion(motion_scores(tiles, real), card.motion_mu, card.motion_sigma)
            motion.extend(scores.tolist())
            if with_sizes:  # bytes of each unit at each length, bounded from above by its ideal code length
                bits = np.cumsum(self.loaded.prior.token_bits(symbols), axis=1)
                sizes.extend(coded_size_bound(bits[:, cfg.structural_tokens - 1 + grid_lengths]))
            pending_tiles.clear()
            pending_real.clear()

        for chunk, real in prefetch(chunk_frames(frames, cfg.frames)):
            for tile in grid.split(video_to_model(chunk, self.device)):
                pending_tiles.append(tile)
                pending_real.append(real)
                if len(pending_tiles) == self.batch_size:
                    flush()
            real_frames.append(real)
            if progress:
                progress(real)
        if not real_frames:
            raise InputError("the video has no frames")
        if pending_tiles:
            flush()
        return _Analysis(np.array(motion), np.array(sizes) if with_sizes else None, real_frames, spool)

    def _write_for_bitrate(self, out: BinaryIO, header: FileHeader, analysis: _Analysis, rate: RateOptions,
                           audio: bytes | None, tiles_per_chunk: int) -> tuple[np.ndarray, int, str | None]:
        """Choose lengths from the bounded sizes, write, and check the file against the target.

        The bounds hold each tile's coded size from above, so the first write fits; should one not,
        the file is written again with the budget cut by the excess.
        """
        duration = float(analysis.frames / header.fps)
        target = int(rate.bitrate * duration / 8)
        overhead = container_overhead(header, len(audio or b""))
        start, excess = out.tell(), 0
        for _ in range(3):
            lengths, note = lengths_for_bitrate(analysis.motion, analysis.sizes, rate, duration, overhead + excess,
                                                self.cfg.max_1d_tokens)
            out.seek(start)
            out.truncate()
            written = self._write(out, header, analysis, lengths, tiles_per_chunk, audio)
            if written <= target:
                break
            excess += written - target
        return lengths, written, note

    def _write(self, out: BinaryIO, header: FileHeader, analysis: _Analysis, lengths: np.ndarray,
               tiles_per_chunk: int, audio: bytes | None) -> int:
        cfg = self.cfg
        unit_values = (cfg.structural_tokens + cfg.max_1d_tokens) * cfg.latent_channels
        start = out.tell()
        writer = OdvaWriter(out, header)
        analysis.spool.seek(0)
        for chunk, real in enumerate(analysis.real_frames):
            tiles = []
            for t in range(tiles_per_chunk):
                unit = chunk * tiles_per_chunk + t
                symbols = np.frombuffer(analysis.spool.read(unit_values), dtype=np.int8)
                symbols = symbols.reshape(-1, cfg.latent_channels)[: cfg.structural_tokens + lengths[unit]]
                motion = min(float(analysis.motion[unit]), 6e4)  # float16 range
                tiles.append(TileRecord(int(lengths[unit]), motion, self.tile_coder.encode(symbols)))
            writer.write_chunk(ChunkRecord(chunk, real, tiles))
        if audio is not None:
            writer.write_audio(audio)
        writer.finish()
        return out.tell() - start

    def _header(self, width: int, height: int, fps: Fraction, frames: int, grid: TileGrid, seed: int,
                rate: RateOptions, audio_info: dict | None) -> FileHeader:
        cfg, card = self.cfg, self.loaded.card
        return FileHeader(
            model_config=cfg.name, model_sha256=card.weights_sha256, prior_sha256=card.prior_sha256,
            width=width, height=height, fps=fps, frames=frames, chunk_frames=cfg.frames,
            tile_size=cfg.tile, tile_overlap=cfg.tile_overlap, tile_ys=list(grid.ys), tile_xs=list(grid.xs),
            latent_channels=cfg.latent_channels, structural_tokens=cfg.structural_tokens,
            max_1d_tokens=cfg.max_1d_tokens, quant_step=card.quant_step,
            quant_mean=list(card.latent_mean), quant_std=list(card.latent_std),
            entropy_coder=ENTROPY_CODER, seed=seed, rate=rate.describe(), audio=audio_info,
            encoder=f"odva {__version__}",
        )

    def _quantizer(self) -> Quantizer:
        card = self.loaded.card
        return Quantizer(card.quant_step, tuple(card.latent_mean), tuple(card.latent_std))

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    # ------------------------------------------------------------------ decode

    def decode_file(self, source: str | Path, destination: str | Path, steps: int | None = None,
                    frame_range: tuple[int, int] | None = None, force: bool = False,
                    progress: Progress | None = None) -> DecodeResult:
        """Decode to .mp4 (H.264), .mkv (FFV1, lossless) or .y4m, by the destination's extension."""
        destination = Path(destination)
        kind = output_kind(destination)
        started = time.perf_counter()
        notes: list[str] = []
        with OdvaReader(source) as reader:
            header = reader.header
            first, stop = self._check_range(header, frame_range)
            audio = reader.read_audio()
            if audio is not None and kind == ".y4m":
                notes.append("y4m holds no audio; the audio track was left out")
                audio = None
            fps = header.fps
            with atomic_output(destination, force) as tmp:
                writer = VideoWriter(tmp, kind, header.width, header.height, fps,
                                     io.BytesIO(audio) if audio is not None else None,
                                     start=float(first / fps), end=float(stop / fps))
                count = 0
                try:
                    # The model runs in the background while this thread compresses and writes.
                    frames = self._decode_frames(reader, steps, first, stop)
                    for frame in prefetch(frames, depth=2 * header.chunk_frames):
                        writer.write(frame)
                        count += 1
                        if progress:
                            progress(1)
                except BaseException:
                    writer.abort()
                    raise
                writer.close()
        return DecodeResult(count, time.perf_counter() - started, notes)

    def decode_array(self, source: str | Path | bytes, steps: int | None = None,
                     frame_range: tuple[int, int] | None = None) -> np.ndarray:
        """Decode an .odva file (path or bytes) to a (T, H, W, 3) uint8 array."""
        with OdvaReader(source) as reader:
            first, stop = self._check_range(reader.header, frame_range)
            return np.stack(list(self._decode_frames(reader, steps, first, stop)))

    @staticmethod
    def _check_range(header: FileHeader, frame_range: tuple[int, int] | None) -> tuple[int, int]:
        if frame_range is None:
            return 0, header.frames
        first, stop = frame_range
        if not 0 <= first < stop <= header.frames:
            raise InputError(f"frame range {first}:{stop} is outside the video's {header.frames} frames")
        return first, stop

    def _decode_frames(self, reader: OdvaReader, steps: int | None, first: int, stop: int) -> Iterator[np.ndarray]:
        """Yield frames first..stop-1, decoding only the chunks that hold them."""
        header = reader.header
        check_decodable(header, self.loaded)
        steps = self.loaded.card.decoding_steps(steps)
        grid = TileGrid.plan(header.height, header.width, header.tile_size, header.tile_overlap)
        quantizer = Quantizer(header.quant_step, tuple(header.quant_mean), tuple(header.quant_std))
        per_chunk = header.chunk_frames
        first_chunk, stop_chunk = first // per_chunk, -(-stop // per_chunk)
        for chunk, video in self._decode_chunks(reader.chunks(first_chunk, stop_chunk), grid, quantizer, steps,
                                                header.seed):
            offset = chunk.index * per_chunk
            for i in range(max(first - offset, 0), min(chunk.frames, stop - offset)):
                yield video[i]

    def _decode_chunks(self, chunks: Iterable[ChunkRecord], grid: TileGrid, quantizer: Quantizer, steps: int,
                       seed: int) -> Iterator[tuple[ChunkRecord, np.ndarray]]:
        """Decode chunk records into (T, H, W, 3) uint8 videos, batching tiles across chunks."""
        n_max = self.cfg.max_1d_tokens
        open_chunks: dict[int, tuple[ChunkRecord, list[Tensor | None]]] = {}
        for batch in prefetch(self._unit_batches(chunks, seed)):
            values = quantizer.dequantize(torch.from_numpy(batch.symbols).to(self.device))
            s = self.cfg.structural_tokens
            keep = Latents.keep_mask(torch.from_numpy(batch.kept).to(self.device), n_max)
            latents = Latents(values[:, :s], values[:, s:], keep)
            noise = batch.noise.to(self.device)
            with torch.no_grad(), self._autocast():
                decoded = sample(lambda x, t: self.loaded.model.velocity(x, t, latents), noise, steps,
                                 self.loaded.card.refine_from)
            for (record, t), tile in zip(batch.units, decoded):
                open_chunks.setdefault(record.index, (record, [None] * len(record.tiles)))[1][t] = tile
            for index in sorted(open_chunks):
                record, tiles = open_chunks[index]
                if any(tile is None for tile in tiles):
                    break
                del open_chunks[index]
                yield record, model_to_video(grid.merge(torch.stack(tiles)))

    def _unit_batches(self, chunks: Iterable[ChunkRecord], seed: int) -> Iterator["_UnitBatch"]:
        """Group the tiles of consecutive chunks into batches, with their symbols and noise (CPU work)."""
        cfg = self.cfg
        s, n_max, c = cfg.structural_tokens, cfg.max_1d_tokens, cfg.latent_channels
        shape = (3, cfg.frames, cfg.tile, cfg.tile)
        units: list[tuple[ChunkRecord, int]] = []

        def batch() -> _UnitBatch:
            symbols = np.zeros((len(units), s + n_max, c), dtype=np.int8)
            for row, (record, t) in zip(symbols, units):
                tile = record.tiles[t]
                if tile.kept > n_max:
                    raise FormatError(f"a tile claims {tile.kept} 1D tokens, the model has {n_max}")
                row[: s + tile.kept] = self.tile_coder.decode(tile.data, s + tile.kept)
            kept = np.array([record.tiles[t].kept for record, t in units])
            noise = torch.stack(list(pool.map(lambda unit: unit_noise(seed, unit[0].index, unit[1], shape), units)))
            return _UnitBatch(list(units), symbols, kept, noise)

        # Drawing noise is the largest CPU cost of decoding; torch releases the GIL while it draws.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for record in chunks:
                for t in range(len(record.tiles)):
                    units.append((record, t))
                    if len(units) == self.batch_size:
                        yield batch()
                        units.clear()
            if units:
                yield batch()


@dataclass
class _UnitBatch:
    units: list[tuple[ChunkRecord, int]]  # (chunk, tile index)
    symbols: np.ndarray  # (B, S + N, C) int8, zeros past each unit's kept length
    kept: np.ndarray  # (B,)
    noise: Tensor  # (B, 3, T, tile, tile), on the CPU
