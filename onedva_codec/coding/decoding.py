"""Decoding: chunk records in, frames out; only the chunks that hold the asked-for frames.

Tiles of consecutive chunks are batched; unpacking latents and drawing noise run in
a background thread, a bounded distance ahead of the model. With several devices the
chunks are spread over a process per device (runtime/device_pool.py), each running the same
pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

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
    job = _DecodeJob(grid, quantizer, request, header.seed, header.chunk_starts, max(header.key_interval, 1))
    holding = header.chunks_holding(request.first, request.stop)
    chunks = _chunk_work(reader, holding)
    one_device = len(engine.devices) == 1
    if one_device:
        decoded = job.run(model, engine, chunks, progress)
    elif model.cfg.previous_frames:  # blocks of runs, as one device decodes them side by side, to a process
        runs = _lanes(engine.batch_size, grid, model.cfg.frames, job.run_chunks)
        decoded = engine.spread(job, chunks, grid.count, _block_starts(runs), job.run_chunks * runs)
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
    run_chunks: int  # the most chunks from a key chunk to the next

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


# Decoded chunks of the runs after the first of a block wait for the first run's: at most this many bytes
_LANE_BYTES = 1 << 30


def _lanes(batch_size: int, grid: TileGrid, frames: int, run_chunks: int) -> int:
    """How many runs of dependent chunks (of up to `run_chunks` chunks of `frames` frames on `grid`) a model
    with previous frames decodes side by side: as many as one batch holds a chunk of (one where a chunk's
    tiles fill a batch), and no more than the chunks waiting to come out in order keep in _LANE_BYTES."""
    run_bytes = run_chunks * frames * grid.height * grid.width * 3
    return max(1, min(batch_size // grid.count, _LANE_BYTES // run_bytes))


def _block_starts(runs: int) -> Callable[[ChunkWork], bool]:
    """Whether a chunk (of a stream that begins with a run, from a key chunk or inside one) begins a block
    of `runs` runs, as `_in_rows` forms them."""
    seen = 0

    def starts(work: ChunkWork) -> bool:
        nonlocal seen
        if seen and work.context:
            return False
        seen += 1
        return (seen - 1) % runs == 0
    return starts


def _in_rows(chunks: Iterable[ChunkWork], runs: int, order: deque[int]) -> Iterator[list[ChunkWork]]:
    """Chunks of a model with previous frames in rows: the runs (a key chunk and the chunks after it that
    depend on it) are taken `runs` at a time, a block, and row j holds the j-th chunk of each run of the
    block. No chunk of a row depends on another of it, and each depends on one of the row before. Before
    a block's rows, the indices of its wanted chunks join `order`, the order they are given out in."""
    def rows_of(block: list[list[ChunkWork]]) -> Iterator[list[ChunkWork]]:
        order.extend(work.record.index for run in block for work in run if work.wanted)
        for j in range(max((len(run) for run in block), default=0)):
            yield [run[j] for run in block if j < len(run)]

    block: list[list[ChunkWork]] = []
    for work in _with_chunks_before(chunks):
        if not work.context:  # a key chunk starts a run
            if len(block) == runs:
                yield from rows_of(block)
                block = []
            block.append([])
        block[-1].append(work)
    yield from rows_of(block)


def _one_a_row(chunks: Iterable[ChunkWork], order: deque[int]) -> Iterator[list[ChunkWork]]:
    """Chunks a row each, in their order (a model whose chunks are drawn alone)."""
    for work in chunks:
        order.append(work.record.index)
        yield [work]


def _decode_chunks(model: LoadedModel, engine: Engine, chunks: Iterable[ChunkWork], job: _DecodeJob,
                   progress: Progress | None) -> Iterator[tuple[ChunkRecord, np.ndarray]]:
    """Decode chunk records into (T, H, W, 3) uint8 videos, batching tiles across chunks; each tile is
    blended into its chunk's frames as soon as it is decoded (units come in chunk and tile order).
    `progress` hears after every model call of the share of the wanted frames it did.

    A model with previous frames draws a tile of a dependent chunk seeing the last frames it drew of the
    same tile in the chunk before: chunks come in rows (`_in_rows`), runs of dependent chunks side by
    side, and a batch holds tiles of one row only (so that it holds the same tiles whichever blocks of
    runs a process is given); finished chunks wait for the earlier ones, to come out in order."""
    cfg, seed, device, schedule = model.cfg, job.seed, engine.device, job.request.schedule
    n_max, s, c = cfg.max_1d_tokens, cfg.structural_tokens, cfg.latent_channels
    noise_shape = (3, cfg.frames, cfg.tile, cfg.tile)
    order: deque[int] = deque()  # the wanted chunks' indices, in the order they are given out
    rows = (_in_rows(chunks, _lanes(engine.batch_size, job.grid, cfg.frames, job.run_chunks), order)
            if cfg.previous_frames else _one_a_row(chunks, order))
    # (chunk, tile) -> the row it was drawn in and its last frames, on the device, until the next chunk's
    # tile takes them or the row after next begins
    drawn: dict[tuple[int, int], tuple[int, Tensor]] = {}

    def previous_frames(batch: _UnitBatch, latents: Latents) -> Latents:
        """The latents with the frames each unit's tile sees from the chunk before (none for a key chunk)."""
        for old in [key for key, (row, _) in drawn.items() if row < batch.row - 1]:
            del drawn[old]
        depends = [bool(batch.works[record.index].context) for record, _ in batch.units]
        if not any(depends):
            return latents
        previous = torch.stack([drawn.pop((record.index - 1, t))[1] if dep else no_frames()
                                for (record, t), dep in zip(batch.units, depends)])
        return dataclasses.replace(latents, previous=previous,
                                   has_previous=torch.tensor(depends, device=device))

    def no_frames() -> Tensor:  # a key chunk's row of `previous`, which the decoder ignores
        return torch.zeros((3, cfg.previous_frames, cfg.tile, cfg.tile), device=device)

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
    for batch in prefetch(_unit_batches(cfg, engine, rows, seed), depth=2):
        decoded = decode(batch)
        if cfg.previous_frames:
            for (record, t), tile in zip(batch.units, decoded):
                drawn[(record.index, t)] = (batch.row, tile[:, -cfg.previous_frames:].float().clamp(-1, 1))
        with record_function("odva.blend"):
            for (record, _), tile in zip(batch.units, decoded):
                if batch.works[record.index].wanted:
                    open_chunks.setdefault(record.index,
                                           (record, job.grid.assembler(engine.chunk_memory)))[1].add(tile)
        while order and order[0] in open_chunks and open_chunks[order[0]][1].done:
            record, assembler = open_chunks.pop(order.popleft())
            yield record, assembler.frames


def _unit_batches(cfg: ModelConfig, engine: Engine, rows: Iterable[list[ChunkWork]], seed: int
                  ) -> Iterator["_UnitBatch"]:
    """Group the tiles of consecutive chunks into batches, with their symbols and noise (CPU work). Chunks
    come in rows; for a model with previous frames a batch holds tiles of one row only.

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
    units: list[tuple[ChunkWork, int]] = []  # (chunk, tile index) of the next batch

    def batch() -> _UnitBatch:
        noise, jobs = None, []
        if not engine.device_noise:
            noise = torch.empty((len(units),) + shape, pin_memory=pin)
            jobs = [pool.submit(unit_noise, seed, work.record.index, t, shape, out)
                    for (work, t), out in zip(units, noise)]
        symbol_jobs = [entropy_jobs[(work.record.index, t)] for work, t in units]
        kept = np.array([work.record.tiles[t].kept for work, t in units])
        rates = np.array([work.record.tiles[t].rate for work, t in units], dtype=np.float32)
        return _UnitBatch([(work.record, t) for work, t in units], {work.record.index: work for work, _ in units}, row,
                          symbol_jobs, kept, rates, noise, jobs)

    entropy_jobs: dict[tuple[int, int], Future] = {}  # (chunk, tile) -> its latents being decoded
    # chunks entropy-decoded in the last row, whose next chunk may depend on them: index -> tiles' jobs
    restored: dict[int, list[Future]] = {}

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

    def after(work: ChunkWork, last_row: dict[int, list[Future]]) -> list[Future]:
        """Entropy-decode a chunk, after the chunks it depends on (from its context if they were not)."""
        previous = None
        if work.context:
            previous = last_row.get(work.record.index - 1)
            if previous is None:
                for record in work.context:
                    previous = entropy_decode(record, previous)
            rates = [tile.rate for tile in work.context[-1].tiles]
            if [tile.rate for tile in work.record.tiles] != rates:
                raise FormatError(f"chunk {work.record.index} depends on the chunk before but changes its rate point")
        restored[work.record.index] = entropy_decode(work.record, previous)
        return restored[work.record.index]

    def flush() -> Iterator[_UnitBatch]:
        yield batch()
        for work, t in units:
            del entropy_jobs[(work.record.index, t)]
        units.clear()

    row = 0
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for next_row, chunks in enumerate(rows):
            if units and cfg.previous_frames:  # one row a batch: its tiles may need the last row's frames
                yield from flush()
            row, last_row, restored = next_row, restored, {}
            for work in chunks:
                for t, job in enumerate(after(work, last_row)):
                    entropy_jobs[(work.record.index, t)] = job
                for t in range(len(work.record.tiles)):
                    units.append((work, t))
                    if len(units) == engine.batch_size:
                        yield from flush()
        if units:
            yield batch()


@dataclass
class _UnitBatch:
    units: list[tuple[ChunkRecord, int]]  # (chunk, tile index)
    works: dict[int, ChunkWork]  # the units' chunks, by index
    row: int  # the row of chunks its units belong to (the last one's, where a batch spans rows)
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
