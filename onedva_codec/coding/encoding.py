"""Encoding: frames in, an .odva file out, in two passes over the latents but one over the video.

Each tile of each chunk (a "unit") is encoded once at full length, its symbols are
spooled to a temporary file, and rate control, which needs the whole video's motion
scores (and, for --bitrate, a bound of every unit's coded size at every length),
then decides how many 1D tokens each unit keeps. Memory stays bounded by a batch of
units whatever the length of the video.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function

from ..bitstream import ratecontrol
from ..bitstream.container import (MAX_KEY_INTERVAL, ChunkRecord, FileHeader, OdvaWriter, TileRecord, check_frame_size,
                                   container_overhead)
from ..bitstream.noise import unit_noise
from ..bitstream.ratecontrol import RateOptions
from ..errors import InputError
from ..model.config import ModelConfig
from ..model.folder import LoadedModel
from ..model.network import geometry_features
from ..runtime.engine import Engine
from ..runtime.prefetch import prefetch
from ..version import __version__
from ..video.geometry import TileGrid, chunk_frames
from ..video.motion import motion_scores, normalise_motion
from ..video.pixels import video_to_model
from ..video.scenes import mark_cuts
from .search import search_latents, search_lengths

KEY_SECONDS = 4.0  # a key chunk about this often by default (where the model's chunks can depend on earlier ones)
CODER_FLUSH_BYTES = 4  # a v3 tile's range coder takes about its ideal length plus its last word
Progress = Callable[[float], None]  # called with the frames just done (fractions of frames as a decode's model goes)


@dataclass(frozen=True)
class EncodeRequest:
    """What to encode and how: the frames' size and rate, the rate options, the file's decoding seed,
    encoder-side search steps (0: none), and the audio to carry (its bytes and description)."""

    width: int
    height: int
    fps: Fraction
    rate: RateOptions = RateOptions()
    seed: int = 0
    search_steps: int = 0
    audio: bytes | None = None
    audio_info: dict | None = None
    scene_cuts: bool = True  # end a chunk where a shot ends (video/scenes.py), so no chunk blends two shots
    # chunks from one key chunk to the next, for a model with a temporal prior (1: every chunk a key chunk);
    # None: about KEY_SECONDS of video
    key_interval: int | None = None

    def __post_init__(self) -> None:
        if self.search_steps < 0:
            raise InputError("search steps must be 0 or more")
        if self.key_interval is not None and not 1 <= self.key_interval <= MAX_KEY_INTERVAL:
            raise InputError(f"the key interval must be 1 to {MAX_KEY_INTERVAL} chunks, not {self.key_interval}")
        check_frame_size(self.width, self.height)


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
class _Analysis:
    """What the first pass learns: per-unit facts plus the spooled symbols."""

    motion: np.ndarray  # normalised, per unit
    sizes: np.ndarray | None  # coded bytes per unit per length_grid entry (--bitrate only)
    real_frames: list[int]  # per chunk
    cuts: list[int]  # frames that start a shot, where a chunk began early
    spool: BinaryIO

    @property
    def frames(self) -> int:
        return sum(self.real_frames)


def encode_frames(model: LoadedModel, engine: Engine, frames: Iterator[np.ndarray], request: EncodeRequest,
                  out: BinaryIO, progress: Progress | None = None) -> EncodeResult:
    """Encode RGB frames of the request's size into `out`: analyse every unit, choose lengths, write the
    file. A search (`request.search_steps` > 0) refines every unit's latent by that many steps through
    the decoder (search.py): a slower encode of a file that decodes better."""
    started = time.perf_counter()
    cfg, rate = model.cfg, request.rate
    if cfg.rate_distortion and request.search_steps:
        raise InputError("--search refines the latents of v1 and v2 models; this model's (v3) are chosen for "
                         "their rate already: encode without it")
    key_interval = _key_interval(model, request)  # a --keyint the model cannot take is refused before any work
    grid = TileGrid.plan(request.height, request.width, cfg.tile, cfg.tile_overlap)
    with tempfile.TemporaryFile() as spool:
        job = _EncodeJob(grid, request.seed, request.search_steps)
        with_sizes = rate.bitrate is not None and not cfg.rate_distortion  # v3 estimates sizes when it needs them
        analysis = _analyse(model, engine, frames, job, spool, with_sizes, request.scene_cuts, progress)
        header = _header(model, request, analysis, grid, key_interval)
        overhead = container_overhead(header, len(request.audio or b""))
        start = out.tell()

        def write(lengths: np.ndarray, rate_point: float = 0.0) -> int:
            out.seek(start)
            out.truncate()
            return _write(engine, model, out, header, analysis, lengths, rate_point, grid.count, request.audio)

        duration = float(analysis.frames / request.fps)
        if cfg.rate_distortion:
            def estimate(rate_point: float, lengths: np.ndarray) -> int:
                return overhead + _estimated_bytes(model, engine, header, analysis, rate_point, lengths)

            _, lengths, written, note = ratecontrol.spend_ladder(
                rate, analysis.motion, duration, cfg.rate_points - 1, cfg.max_1d_tokens,
                lambda point, lengths: write(lengths, point), estimate, model.card.rate_ladder)
        else:
            lengths, written, note = ratecontrol.spend(rate, analysis.motion, analysis.sizes, duration, overhead,
                                                       cfg.max_1d_tokens, write)
    return EncodeResult(analysis.frames, request.width, request.height, request.fps, written,
                        time.perf_counter() - started, float(lengths.mean() / cfg.max_1d_tokens),
                        [note] if note else [])


def _analyse(model: LoadedModel, engine: Engine, frames: Iterator[np.ndarray], job: _EncodeJob, spool: BinaryIO,
             with_sizes: bool, scene_cuts: bool, progress: Progress | None) -> _Analysis:
    cfg = model.cfg
    motion: list[float] = []
    sizes: list[list[int]] = []
    real_frames: list[int] = []
    cuts: list[int] = []

    def marked() -> Iterator[tuple[np.ndarray, bool]]:
        for index, (frame, cut) in enumerate(mark_cuts(frames) if scene_cuts else ((f, False) for f in frames)):
            if cut:
                cuts.append(index)
            yield frame, cut

    def chunks() -> Iterator[tuple[Tensor, int, int]]:
        """Each chunk's (T, H, W, 3) pixels, its real frame count and its index."""
        chunked = chunk_frames(marked(), cfg.frames, engine.chunk_memory)
        for index, (chunk, real) in enumerate(prefetch(chunked)):
            real_frames.append(real)
            yield chunk, real, index

    one_device = len(engine.devices) == 1
    analysed = job.run(model, engine, chunks(), progress) if one_device else \
        engine.spread(job, chunks(), job.grid.count)
    for chunk, (symbols, scores) in enumerate(analysed):
        if progress and not one_device:  # a chunk counts once a device is through it (reading runs ahead)
            progress(real_frames[chunk])
        spool.write(symbols.tobytes())
        motion.extend(scores)
        if with_sizes:  # bytes of each unit at each length, bounded from above by its ideal code length
            sizes.extend(ratecontrol.size_table(model.prior.token_bits(symbols), cfg.structural_tokens,
                                                cfg.max_1d_tokens))
    if not real_frames:
        raise InputError("the video has no frames")
    return _Analysis(np.array(motion), np.array(sizes) if with_sizes else None, real_frames, cuts, spool)


@dataclass(frozen=True)
class _EncodeJob:
    """Encoding chunks' tiles into symbols, where the model runs (device_pool.Job)."""
    grid: TileGrid
    seed: int  # the file's: it fixes the noise the decoder starts from, which the search decodes
    search_steps: int

    def run(self, model: LoadedModel, engine: Engine, chunks: Iterable[tuple[Tensor, int, int]],
            progress: Progress | None = None) -> Iterator[tuple[np.ndarray, list[float]]]:
        """Each chunk's (tiles, S + N, C) int8 symbols at full length (a v3 model: its float16 latents, which
        the rate point turns into symbols when the file is written) and its tiles' motion scores;
        tiles of consecutive chunks are batched together. `progress` hears after every batch of its
        share of the frames (a tile is 1 / tiles of its chunk's real frames)."""
        content_h, content_w = self.grid.content_size
        cfg, card, device = model.cfg, model.card, engine.device
        quantizer = model.quantizer()

        def batches() -> Iterator[list[tuple[Tensor, int, int, int]]]:
            """Units (a tile's pixels on the device, its chunk's real frames, the chunk's index, the tile's),
            engine.batch_size at a time. A chunk crosses to the device whole, in one copy (from pinned memory
            on a GPU: without waiting), and is cut into tiles there."""
            units = []
            for chunk, real, index in chunks:
                for tile, pixels in enumerate(self.grid.split(chunk.to(device, non_blocking=chunk.is_pinned()))):
                    units.append((pixels, real, index, tile))
                    if len(units) == engine.batch_size:
                        yield units
                        units = []
            if units:
                yield units

        symbols: list[np.ndarray] = []
        scores: list[float] = []
        for units in batches():
            tiles = video_to_model(torch.stack([unit[0] for unit in units]))
            real = torch.tensor([unit[1] for unit in units], device=device)
            geometry = geometry_features(torch.full_like(real, content_h), torch.full_like(real, content_w), real,
                                         cfg)
            with torch.no_grad(), engine.autocast(device), record_function("odva.model"):
                means = engine.run("encode", tiles, geometry).means()
            if self.search_steps:
                noise = torch.stack([self._noise(cfg, engine, index, tile) for _, _, index, tile in units])
                lengths = torch.stack([search_lengths(self.seed, index, tile, self.search_steps,
                                                      cfg.max_1d_tokens) for _, _, index, tile in units])
                with record_function("odva.search_latents"):
                    means = search_latents(model, engine, tiles, means, noise, real, self.grid.content_size,
                                           lengths)
            if cfg.rate_distortion:
                symbols.extend(means.to(torch.float16).cpu().numpy())
            else:
                symbols.extend(quantizer.quantize(means).cpu().numpy())
            scores.extend(normalise_motion(motion_scores(tiles, real), card.motion_mu, card.motion_sigma).tolist())
            if progress:
                progress(sum(unit[1] for unit in units) / self.grid.count)
            while len(symbols) >= self.grid.count:
                yield np.stack(symbols[: self.grid.count]), scores[: self.grid.count]
                del symbols[: self.grid.count], scores[: self.grid.count]

    def _noise(self, cfg: ModelConfig, engine: Engine, chunk: int, tile: int) -> Tensor:
        """The noise a decoder on this engine will draw for the unit (bitstream.noise.unit_noise)."""
        shape = (3, cfg.frames, cfg.tile, cfg.tile)
        if engine.device_noise:
            return unit_noise(self.seed, chunk, tile, shape, device=engine.device)
        return unit_noise(self.seed, chunk, tile, shape).to(engine.device, non_blocking=True)


def _spooled(model: LoadedModel, analysis: _Analysis) -> Iterator[np.ndarray]:
    """Each unit's spooled (S + N, C) latents at full length, in order: int8 symbols, or a v3 model's
    float16 latents."""
    cfg = model.cfg
    dtype = np.dtype(np.float16 if cfg.rate_distortion else np.int8)
    unit_bytes = (cfg.structural_tokens + cfg.max_1d_tokens) * cfg.latent_channels * dtype.itemsize
    analysis.spool.seek(0)
    for _ in range(len(analysis.motion)):
        yield np.frombuffer(analysis.spool.read(unit_bytes), dtype=dtype).reshape(-1, cfg.latent_channels)


def _to_send_batches(model: LoadedModel, engine: Engine, header: FileHeader, analysis: _Analysis, rate_point: float,
                     lengths: np.ndarray) -> Iterator[tuple[Tensor, Tensor, Tensor, np.ndarray, Tensor | None]]:
    """A v3 model's units, engine.batch_size at a time, at one rate point, each keeping its length: (gained
    latents, hyper-latents, kept planes) where the codec's own copy of the model is, the lengths, and the
    gained latents of the units they depend on (zeros for a key chunk's; None where no unit of the batch
    depends on another): a unit of a chunk that depends on the one before depends on the same tile there,
    a chunk's tiles earlier."""
    depends, tiles_per_chunk = _dependent_units(header), header.tile_count
    latents = _spooled(model, analysis)
    units = len(analysis.motion)
    recent: dict[int, Tensor] = {}  # the gained latents of the last tiles_per_chunk units
    for first in range(0, units, engine.batch_size):
        batch = lengths[first:first + engine.batch_size]
        y, kept = _gained(model, np.stack([next(latents) for _ in batch]), rate_point, batch)
        previous = None
        if depends is not None:
            recent.update({first + i: row for i, row in enumerate(y)})
            if depends[first:first + len(batch)].any():
                previous = torch.stack([recent[first + i - tiles_per_chunk] if depends[first + i]
                                        else torch.zeros_like(row) for i, row in enumerate(y)])
            recent = {u: row for u, row in recent.items() if u >= first + len(batch) - tiles_per_chunk}
        yield y, model.model.hyperprior.hyper_latent(y, previous), kept, batch, previous


def _estimated_bytes(model: LoadedModel, engine: Engine, header: FileHeader, analysis: _Analysis, rate_point: float,
                     lengths: np.ndarray) -> int:
    """About the bytes of a v3 file's tile data at this rate point and these lengths, without coding it."""
    total = 0
    # a dependent unit's prediction is estimated from the chunk before as the encoder has it (unrounded)
    for y, z, kept, _, previous in _to_send_batches(model, engine, header, analysis, rate_point, lengths):
        bits = model.model.hyperprior.estimated_bits(y, z, kept, previous)
        total += int(torch.ceil(bits / 8).sum().item()) + CODER_FLUSH_BYTES * len(bits)
    return total


def _write(engine: Engine, model: LoadedModel, out: BinaryIO, header: FileHeader, analysis: _Analysis,
           lengths: np.ndarray, rate_point: float, tiles_per_chunk: int, audio: bytes | None) -> int:
    cfg = model.cfg
    start = out.tell()
    writer = OdvaWriter(out, header)

    depends = _dependent_units(header)

    def tiles() -> Iterator[tuple]:
        if not cfg.rate_distortion:
            for unit, symbols in enumerate(_spooled(model, analysis)):
                yield (symbols[: cfg.structural_tokens + lengths[unit]],)
            return
        for y, z, _, batch, _ in _to_send_batches(model, engine, header, analysis, rate_point, lengths):
            yield from zip(z.cpu().numpy().astype(np.int64), y.cpu().numpy(), batch.tolist())

    def chunks() -> Iterator[tuple[bool, list[tuple]]]:
        """(whether it depends on the chunk before, its tiles) of each chunk."""
        stream = tiles()
        for unit in range(0, len(depends), tiles_per_chunk):
            yield bool(depends[unit]), [next(stream) for _ in range(tiles_per_chunk)]

    coded = engine.encode_tiles(tiles()) if depends is None else engine.encode_chunks(chunks())
    for chunk, real in enumerate(analysis.real_frames):
        records = []
        for unit in range(chunk * tiles_per_chunk, (chunk + 1) * tiles_per_chunk):
            motion = min(float(analysis.motion[unit]), 6e4)  # float16 range
            with record_function("odva.pack_latents"):
                records.append(TileRecord(int(lengths[unit]), motion, next(coded), rate_point))
        writer.write_chunk(ChunkRecord(chunk, real, records))
    if audio is not None:
        writer.write_audio(audio)
    writer.finish()
    return out.tell() - start


def _gained(model: LoadedModel, latents: np.ndarray, rate_point: float, lengths: np.ndarray
            ) -> tuple[Tensor, Tensor]:
    """A v3 model's units (B, S + N, C) at one rate point, each keeping its length of 1D tokens -> their
    gained latents (B, planes, G, G) and kept planes, computed where the codec's own copy of the model is
    (its one device, or the CPU beside device processes)."""
    net, cfg = model.model, model.cfg
    device = next(net.parameters()).device
    values = torch.from_numpy(latents).to(device).float()
    kept = torch.from_numpy(np.stack([model.tile_coder.kept_planes(int(k)) for k in lengths])).to(device)
    rate = torch.full((len(latents),), rate_point, device=device)
    y = net.hyperprior.gained_planes(values[:, :cfg.structural_tokens], values[:, cfg.structural_tokens:], rate, kept,
                                     net.decoder.home_slot)
    return y, kept


def _dependent_units(header: FileHeader) -> np.ndarray | None:
    """Per unit, whether its chunk depends on the one before; None where every chunk is a key chunk."""
    if not header.key_interval:
        return None
    keys = set(header.key_chunks)
    return np.repeat([chunk not in keys for chunk in range(header.chunk_count)], header.tile_count)


def _header(model: LoadedModel, request: EncodeRequest, analysis: _Analysis, grid: TileGrid, key_interval: int
            ) -> FileHeader:
    cfg, card = model.cfg, model.card
    search = {"search": request.search_steps} if request.search_steps else {}
    return FileHeader(
        model_config=cfg.name, model_sha256=card.weights_sha256, prior_sha256=card.prior_sha256,
        width=request.width, height=request.height, fps=request.fps, frames=analysis.frames, chunk_frames=cfg.frames,
        tile_size=cfg.tile, tile_overlap=cfg.tile_overlap, tile_ys=list(grid.ys), tile_xs=list(grid.xs),
        latent_channels=cfg.latent_channels, structural_tokens=cfg.structural_tokens,
        max_1d_tokens=cfg.max_1d_tokens, quant_step=card.quant_step,
        quant_mean=list(card.latent_mean), quant_std=list(card.latent_std),
        entropy_coder=model.entropy_coder, seed=request.seed, audio=request.audio_info,
        rate={**request.rate.describe(), **search}, encoder=f"odva {__version__}", cuts=analysis.cuts,
        key_interval=key_interval,
    )


def _key_interval(model: LoadedModel, request: EncodeRequest) -> int:
    """The header's key_interval: 0 where every chunk is a key chunk."""
    cfg = model.cfg
    if not cfg.temporal_prior:
        if request.key_interval not in (None, 1):
            raise InputError(f"model {model.model_id} codes every chunk on its own: --keyint needs a model whose "
                             "chunks can depend on the one before (a temporal prior)")
        return 0
    interval = request.key_interval or max(1, round(KEY_SECONDS * float(request.fps) / cfg.frames))
    return 0 if interval == 1 else interval
