"""Decoding: chunk records in, frames out; only the chunks that hold the asked-for frames.

Tiles of consecutive chunks are batched; unpacking latents and drawing noise run in
a background thread, a bounded distance ahead of the model. With several devices the
chunks are spread over a process per device (runtime/device_pool.py), each running the same
pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function

from ..bitstream.container import ChunkRecord, OdvaReader
from ..bitstream.latent_coding import Quantizer
from ..bitstream.noise import unit_noise
from ..errors import FormatError
from ..model.config import ModelConfig
from ..model.folder import LoadedModel, check_decodable
from ..model.network import Latents
from ..model.sampler import sample
from ..model.schedule import DecodingSchedule
from ..runtime.engine import Engine
from ..runtime.prefetch import check_cancelled, prefetch
from ..video.geometry import ChunkAssembler, TileGrid
from .encoding import Progress


@dataclass(frozen=True)
class DecodeRequest:
    """Which frames to decode (first .. stop - 1) and how (the schedule, resolved once from the model's
    card and the caller's steps: `ModelCard.schedule`)."""

    first: int
    stop: int
    schedule: DecodingSchedule

    def wanted(self, start: int, real: int) -> range:
        """The frames of a chunk (its first frame, its real frames) that were asked for."""
        return range(max(self.first - start, 0), min(real, self.stop - start))


def decode_frames(model: LoadedModel, engine: Engine, reader: OdvaReader, request: DecodeRequest,
                  progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Yield the request's frames, decoding only the chunks that hold them. `progress` hears of the frames
    as the model works on them: after each model call on one device, as each chunk comes back on several."""
    header = reader.header
    check_decodable(header, model)
    grid = TileGrid.plan(header.height, header.width, header.tile_size, header.tile_overlap)
    quantizer = Quantizer(header.quant_step, tuple(header.quant_mean), tuple(header.quant_std))
    job = _DecodeJob(grid, quantizer, request, header.seed, header.chunk_starts)
    holding = header.chunks_holding(request.first, request.stop)
    chunks = _chunk_work(reader, holding)
    one_device = len(engine.devices) == 1
    if one_device:
        decoded = job.run(model, engine, chunks, progress)
    elif model.cfg.previous_frames:  # a run of dependent chunks to one process: none draws a chunk twice
        decoded = engine.spread(job, chunks, grid.count, lambda work: not work.context, header.key_interval)
    else:
        decoded = engine.spread(job, chunks, grid.count)
    for index, real, video in decoded:
        frames = request.wanted(job.starts[index], real)
        if progress and not one_device:
            progress(len(frames))
        video = video.numpy()
        for i in frames:
            yield video[i]


@dataclass(frozen=True)
class ChunkWork:
    """A chunk to decode, and the chunks from its key chunk up to it where it depends on them (none for a
    key chunk): whoever decodes it without having decoded the one before starts from these. `wanted` is
    False for a chunk decoded only because the next one depends on its frames (a model with previous
    frames): its frames are not given out."""

    record: ChunkRecord
    context: tuple[ChunkRecord, ...] = ()
    wanted: bool = True


def _chunk_work(reader: OdvaReader, wanted: range) -> Iterator[ChunkWork]:
    """The chunks of `wanted`, read from the key chunk the first depends on."""
    keys = set(reader.header.key_chunks)
    run: list[ChunkRecord] = []  # the chunks since the last key chunk
    for record in reader.chunks(reader.header.key_chunk_of(wanted.start), wanted.stop):
        if record.index in keys:
            run = []
        if record.index >= wanted.start:
            yield ChunkWork(record, tuple(run))
        run.append(record)


@dataclass(frozen=True)
class _DecodeJob:
    """Decoding chunk records into frames, where the model runs (device_pool.Job)."""
    grid: TileGrid
    quantizer: Quantizer
    request: DecodeRequest
    seed: int
    starts: list[int]  # each chunk's first frame

    def run(self, model: LoadedModel, engine: Engine, chunks: Iterable[ChunkWork], progress: Progress | None = None
            ) -> Iterator[tuple[int, int, Tensor]]:
        """(chunk index, real frames, (T, H, W, 3) uint8 frames) of each chunk. The frames are a tensor
        (a view of the array) so that from a device process they cross in shared memory."""
        for record, video in _decode_chunks(model, engine, chunks, self, progress):
            yield record.index, record.frames, torch.from_numpy(video)


def _with_chunks_before(chunks: Iterable[ChunkWork]) -> Iterator[ChunkWork]:
    """For a model whose decoder sees the frames of the chunk before: every chunk that depends on the one
    before comes after it, the chunks from its key chunk decoded first (not wanted) where they were not
    (random access, or a device process that starts inside a run)."""
    last = -1
    for work in chunks:
        if work.context and last != work.record.index - 1:
            for j, record in enumerate(work.context):
                yield ChunkWork(record, work.context[:j], wanted=False)
        yield work
        last = work.record.index


def _decode_chunks(model: LoadedModel, engine: Engine, chunks: Iterable[ChunkWork], job: _DecodeJob,
                   progress: Progress | None) -> Iterator[tuple[ChunkRecord, np.ndarray]]:
    """Decode chunk records into (T, H, W, 3) uint8 videos, batching tiles across chunks; each tile is
    blended into its chunk's frames as soon as it is decoded (units come in chunk and tile order).
    `progress` hears after every model call of the share of the wanted frames it did.

    A model with previous frames draws a tile of a dependent chunk seeing the last frames it drew of the
    same tile in the chunk before: chunks are decoded one after another, a batch never holding two (so
    that it holds the same tiles whichever chunks a process is given)."""
    cfg, seed, device, schedule = model.cfg, job.seed, engine.device, job.request.schedule
    n_max, s, c = cfg.max_1d_tokens, cfg.structural_tokens, cfg.latent_channels
    noise_shape = (3, cfg.frames, cfg.tile, cfg.tile)
    if cfg.previous_frames:
        chunks = _with_chunks_before(chunks)
    drawn: dict[tuple[int, int], Tensor] = {}  # (chunk, tile) -> the last frames drawn of it, on the device

    def previous_frames(batch: _UnitBatch, latents: Latents) -> Latents:
        """The latents with the frames each unit's tile sees from the chunk before (none for a key chunk)."""
        depends = [bool(batch.works[record.index].context) for record, _ in batch.units]
        if not any(depends):
            return latents
        index = batch.units[0][0].index  # one chunk a batch
        for old in [key for key in drawn if key[0] < index - 1]:
            del drawn[old]
        previous = torch.stack([drawn[(index - 1, t)] for _, t in batch.units])
        return dataclasses.replace(latents, previous=previous,
                                   has_previous=torch.tensor(depends, device=device))

    def decode(batch: _UnitBatch) -> Tensor:
        keep = Latents.keep_mask(torch.from_numpy(batch.kept).to(device), n_max)
        if cfg.rate_distortion:  # restored planes at each unit's rate point
            net = model.model
            structural, tokens_1d = net.hyperprior.restore(torch.from_numpy(batch.planes()).to(device),
                                                           torch.from_numpy(batch.rates).to(device),
                                                           net.decoder.home_slot)
            latents = Latents(structural, tokens_1d, keep)
        else:
            values = job.quantizer.dequantize(torch.from_numpy(batch.symbols(s + n_max, c)).to(device))
            latents = Latents(values[:, :s], values[:, s:], keep)
        if cfg.previous_frames:
            latents = previous_frames(batch, latents)
        if engine.device_noise:
            noise = torch.empty((len(batch.units),) + noise_shape, device=device)
            for (record, t), out in zip(batch.units, noise):
                unit_noise(seed, record.index, t, noise_shape, out, device)
        else:
            for drawn in batch.noise_jobs:
                drawn.result()
            noise = batch.noise.to(device, non_blocking=True)  # pinned when a GPU is in use
        # each model call does 1 / steps of its units' frames, a unit 1 / tiles of its chunk's
        done = sum(len(job.request.wanted(job.starts[record.index], record.frames))
                   for record, _ in batch.units) / (job.grid.count * schedule.steps)

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            check_cancelled()  # a reader that stopped (Ctrl-C) ends the decode here, not a chunk later
            v = engine.run("velocity", x, t, latents)
            if progress:
                progress(done)
            return v

        with torch.no_grad(), engine.autocast(device), record_function("odva.model"):
            return sample(velocity, noise, schedule)

    open_chunks: dict[int, tuple[ChunkRecord, ChunkAssembler]] = {}
    for batch in prefetch(_unit_batches(cfg, engine, chunks, seed), depth=2):
        decoded = decode(batch)
        if cfg.previous_frames:
            for (record, t), tile in zip(batch.units, decoded):
                drawn[(record.index, t)] = tile[:, -cfg.previous_frames:].float().clamp(-1, 1)
        with record_function("odva.blend"):
            for (record, _), tile in zip(batch.units, decoded):
                if batch.works[record.index].wanted:
                    open_chunks.setdefault(record.index,
                                           (record, job.grid.assembler(engine.chunk_memory)))[1].add(tile)
        for index in sorted(open_chunks):
            record, assembler = open_chunks[index]
            if not assembler.done:
                break
            del open_chunks[index]
            yield record, assembler.frames


def _unit_batches(cfg: ModelConfig, engine: Engine, chunks: Iterable[ChunkWork], seed: int
                  ) -> Iterator["_UnitBatch"]:
    """Group the tiles of consecutive chunks into batches, with their symbols and noise (CPU work).

    A tile of a chunk that depends on the one before is entropy-decoded once the same tile of that chunk
    is (its restored planes are the temporal prior's context): tiles of one chunk decode side by side,
    chunks one after another, ahead of the model.

    Noise is the largest CPU cost of decoding: it is drawn by a pool of threads (torch releases the
    GIL while it draws) while this thread unpacks the next batch's symbols, into page-locked memory
    when a GPU is in use, so that it crosses to the GPU without a staging copy."""
    n_max = cfg.max_1d_tokens
    max_rate = max(cfg.rate_points - 1, 0)
    shape = (3, cfg.frames, cfg.tile, cfg.tile)
    pin = engine.device.type == "cuda"
    units: list[tuple[ChunkRecord, int]] = []
    works: dict[int, ChunkWork] = {}  # the chunks of the units, by index

    def batch() -> _UnitBatch:
        noise, jobs = None, []
        if not engine.device_noise:
            noise = torch.empty((len(units),) + shape, pin_memory=pin)
            jobs = [pool.submit(unit_noise, seed, record.index, t, shape, out)
                    for (record, t), out in zip(units, noise)]
        symbol_jobs = [entropy_jobs[(record.index, t)] for record, t in units]
        kept = np.array([record.tiles[t].kept for record, t in units])
        rates = np.array([record.tiles[t].rate for record, t in units], dtype=np.float32)
        return _UnitBatch(list(units), {record.index: works[record.index] for record, _ in units}, symbol_jobs,
                          kept, rates, noise, jobs)

    entropy_jobs: dict[tuple[int, int], Future] = {}  # (chunk, tile) -> its latents being decoded
    last: tuple[int, list[Future]] = (-1, [])  # the last chunk entropy-decoded and its tiles' jobs

    def entropy_decode(record: ChunkRecord, previous: list[Future] | None) -> list[Future]:
        jobs = []
        with record_function("odva.unpack_latents"):
            for t, tile in enumerate(record.tiles):
                if tile.kept > n_max:
                    raise FormatError(f"a tile claims {tile.kept} 1D tokens, the model has {n_max}")
                if tile.rate > max_rate:
                    raise FormatError(f"a tile claims rate point {tile.rate:g}, the model's go up to {max_rate}")
                context = None
                if previous is not None:
                    context = previous[t].result()  # the same tile of the chunk before, restored
                jobs.append(engine.decode_tile(tile.data, engine.model.decode_count(tile.kept), context))
        return jobs

    def after(work: ChunkWork) -> list[Future]:
        """Entropy-decode a chunk, after the chunks it depends on (from its context if they were not)."""
        nonlocal last
        previous = None
        if work.context:
            if last[0] != work.record.index - 1:
                last = (-1, [])
                for record in work.context:
                    last = (record.index, entropy_decode(record, last[1] or None))
            previous = last[1]
            rates = [tile.rate for tile in work.context[-1].tiles]
            if [tile.rate for tile in work.record.tiles] != rates:
                raise FormatError(f"chunk {work.record.index} depends on the chunk before but changes its rate point")
        last = (work.record.index, entropy_decode(work.record, previous))
        return last[1]

    def flush() -> Iterator[_UnitBatch]:
        yield batch()
        for record, t in units:
            del entropy_jobs[(record.index, t)]
        units.clear()
        works.clear()

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for work in chunks:
            record = work.record
            if units and cfg.previous_frames:  # one chunk a batch: its tiles may need the last one's frames
                yield from flush()
            works[record.index] = work
            for t, job in enumerate(after(work)):
                entropy_jobs[(record.index, t)] = job
            for t in range(len(record.tiles)):
                units.append((record, t))
                if len(units) == engine.batch_size:
                    yield from flush()
                    works[record.index] = work
        if units:
            yield batch()


@dataclass
class _UnitBatch:
    units: list[tuple[ChunkRecord, int]]  # (chunk, tile index)
    works: dict[int, ChunkWork]  # the units' chunks, by index
    symbol_jobs: list[Future]  # each unit's (S + kept, C) int8 symbols (v3: its planes), decoded on a worker
    kept: np.ndarray  # (B,)
    rates: np.ndarray  # (B,) rate points (v3)
    noise: Tensor | None  # (B, 3, T, tile, tile), on the CPU, filled by noise_jobs; None: drawn on the GPU
    noise_jobs: list[Future]

    def symbols(self, values: int, channels: int) -> np.ndarray:
        """(B, values, C) int8, zeros past each unit's kept length (waits for the decoding)."""
        with record_function("odva.wait_for_symbols"):
            out = np.zeros((len(self.units), values, channels), dtype=np.int8)
            for row, job in zip(out, self.symbol_jobs):
                decoded = job.result()
                row[: len(decoded)] = decoded
        return out

    def planes(self) -> np.ndarray:
        """A v3 model's (B, planes, G, G) float32 restored latents (waits for the decoding)."""
        with record_function("odva.wait_for_symbols"):
            return np.stack([job.result() for job in self.symbol_jobs])
