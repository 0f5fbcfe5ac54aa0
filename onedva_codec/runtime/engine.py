"""How a model runs: its device (or a process per device), batch size, compilation, coding workers and
host memory. What the model is (network, card, entropy prior) is a `model.folder.LoadedModel`, which
every job is also given; an Engine only runs it."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import InputError, WeightsError
from ..model.config import ModelConfig
from ..model.folder import LoadedModel, load_model
from .coding_pool import TileCoderPool
from .device_pool import DevicePool, Job, segment_length


def resolve_devices(name: str = "auto") -> list[torch.device]:
    """One device, or several to spread the work over, a process each: 'cuda:0,1' (or 'cuda:0,cuda:1'),
    'cuda:all' for every GPU of the machine. A GPU named twice ('cuda:0,0') gets two processes, for
    when one process's host work cannot keep it busy; 'cpu,cpu' runs two on the CPU."""
    if name == "cuda:all":
        if not torch.cuda.is_available():
            raise InputError("--device cuda:all asked for, but no CUDA GPU is available; use --device cpu")
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    parts = [part.strip() for part in name.split(",")]
    if len(parts) > 1 and parts[0].startswith("cuda:"):  # cuda:0,1 means cuda:0,cuda:1
        parts = [part if part.startswith("cuda") else f"cuda:{part}" for part in parts]
    return [resolve_device(part) for part in parts]


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


def device_process_engine(weights: str, device: str, shared_memory: Callable[[tuple[int, ...]], torch.Tensor],
                          options: dict) -> tuple[LoadedModel, Engine]:
    """What a device process of DevicePool runs on: the model of `weights` on `device`, and an Engine for it
    whose chunks of decoded frames are made in `shared_memory` (they cross to the parent without a copy)."""
    model = load_model(weights)
    return model, Engine(model, device, shared_memory=shared_memory, **options)


class Engine:
    """The model on its device, how many tiles go to it at once, and the processes around it. With several
    devices the model runs in a process per device (`spread`), each with an Engine of its own. Those
    processes are spawned, which runs the calling script's top level again: guard it with
    `if __name__ == "__main__":`.

    compile: run the model's encoder and decoder through torch.compile (about twice as fast per model
    call on a GPU, after a first batch that compiles for some seconds). Its kernels round differently
    from the plain ones, so frames differ slightly from an uncompiled decode of the same file (as between
    two GPU kinds), but decoding a file twice gives the same frames.

    coding_workers: processes that entropy-code tiles (0: on the calling thread). Default, when the model
    runs on a GPU, where coding would otherwise limit the speed: half the CPU cores, at most 8, for a v1/v2
    model; every core but one for a v3 model, whose tiles cost about eight times as much to code (a v3
    encode at 1080p on a 16-core H100 host: 119 frames/s with 8 workers, 182 with 15; docs/performance.md).
    0 on the CPU, where the model does.

    device_noise: draw each tile's starting noise on the device that decodes it (the format's stream
    is the CPU generator's). On a GPU the largest CPU cost of one-step decoding goes, at the same
    quality: frames differ slightly from the CPU stream's (two noise draws decode 45 dB apart at one
    step) and are the same on every GPU. On the CPU it is the format's stream: the same frames.

    shared_memory: where chunks of pixels are kept on the host (`chunk_memory`); a device process
    passes its shared buffers, so that decoded frames cross to the parent without a copy.
    """

    def __init__(self, model: LoadedModel, device: str = "auto", batch_size: int | None = None, compile: bool = False,
                 coding_workers: int | None = None, device_noise: bool = False,
                 shared_memory: Callable[[tuple[int, ...]], torch.Tensor] | None = None):
        self.devices = resolve_devices(device)
        self.device = self.devices[0]  # where the model runs (one device), or the first of them
        self.model = model
        # the model's own copy: on its one device, or on the CPU when each of several devices runs a process
        # with a copy of its own (this one then needs only the card and prior)
        model.model.to(self.device if len(self.devices) == 1 else torch.device("cpu"))
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 4)
        if self.batch_size < 1:
            raise InputError("batch size must be at least 1")
        self.device_noise = device_noise
        cores, shares = os.cpu_count() or 1, len(self.devices)
        # several devices: each process gets its share of the cores (more only contend on them)
        each = max(1, _default_coding_workers(model.cfg, cores, shares)) if self.device.type == "cuda" else 0
        self._device_options = dict(batch_size=self.batch_size, compile=compile, device_noise=device_noise,
                                    coding_workers=each if coding_workers is None else coding_workers)
        self._device_threads = max(1, cores // shares)
        if coding_workers is None:
            coding_workers = _default_coding_workers(model.cfg, cores, 1) if self.device.type == "cuda" else 0
        if coding_workers < 0:
            raise InputError("coding workers must be 0 or more")
        self.coding_workers = coding_workers
        # started here, before any thread of the codec's: workers are forked on Linux
        self._coding_pool = TileCoderPool(model.prior, model.cfg, coding_workers) if coding_workers else None
        self.compiled = compile
        # compiled lazily, on first call
        self._compiled = {method: torch.compile(getattr(model.model, method), dynamic=False)
                          for method in ("encode", "velocity")} if compile and len(self.devices) == 1 else {}
        self._device_pool: DevicePool | None = None
        self._shared_memory = shared_memory

    def run(self, method: str, *args):
        """`model.<method>(*args)` on a batch of at most batch_size rows (tensors, and dataclasses of
        them, batch first). Compiled, a shorter batch (a video's last) is padded to batch_size with
        copies of its last row and the output cut back: one graph then serves every batch, and the same
        file always meets the same kernels."""
        if not self.compiled:
            return getattr(self.model.model, method)(*args)
        rows = next(arg.shape[0] for arg in args if isinstance(arg, torch.Tensor))
        if rows < self.batch_size:
            args = _map_rows(args, lambda x: torch.cat([x, x[-1:].expand(self.batch_size - rows, *x.shape[1:])]))
        try:
            out = self._compiled[method](*args)
        except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. no C++ compiler for the CPU backend
            raise InputError(f"--compile failed ({str(error).splitlines()[0][:200]}); run without it") from None
        return _map_rows(out, lambda x: x[:rows]) if rows < self.batch_size else out

    def decode_tile(self, data: bytes, count: int, previous: np.ndarray | None = None) -> Future:
        """A tile's latents decoded on a worker process (or here, done at once): a v1/v2 model's
        (count tokens, C) int8 symbols, a v3 model's restored planes keeping `count` 1D tokens (after
        `previous`, the same tile's restored planes in the chunk before, where the chunk depends on it)."""
        if self._coding_pool is None:
            done: Future = Future()
            # a v1/v2 tile coder takes no previous planes: its chunks never depend on another
            done.set_result(self.model.tile_coder.decode(data, count, *(() if previous is None else (previous,))))
            return done
        return self._coding_pool.decode(data, count, previous)

    def encode_tiles(self, tiles: Iterable[tuple]) -> Iterator[bytes]:
        """Each tile's bytes, in order, coded on the worker processes (or here): the tile coder's
        encode(*tile) ((symbols,) for a v1/v2 model, (z, y, kept 1D tokens) for v3)."""
        if self._coding_pool is None:
            return (self.model.tile_coder.encode(*tile) for tile in tiles)
        return self._coding_pool.encode_all(tiles)

    def encode_chunks(self, chunks: Iterable[tuple[bool, list[tuple]]]) -> Iterator[bytes]:
        """A v3 model's tiles chunk by chunk, each chunk (whether it depends on the one before, its tiles'
        (z, y, kept 1D tokens)): every tile's bytes in order. A tile of a dependent chunk is coded knowing
        what a decoder restores of the same tile in the chunk before, so a chunk waits for the one before;
        its tiles are coded side by side on the worker processes."""
        previous: list[np.ndarray] | None = None
        for depends, tiles in chunks:
            if depends and (previous is None or len(previous) != len(tiles)):
                raise ValueError("a dependent chunk needs the chunk before it")
            tasks = [(*tile, previous[t] if depends else None) for t, tile in enumerate(tiles)]
            if self._coding_pool is None:
                coded = [self.model.tile_coder.encode_restoring(*task) for task in tasks]
            else:
                coded = [job.result() for job in [self._coding_pool.encode_restoring(task) for task in tasks]]
            previous = [restored for _, restored in coded]
            yield from (data for data, _ in coded)

    def chunk_memory(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uninitialised uint8 memory on the host for a chunk of pixels on its way to the model or back
        from it: in a buffer shared with the device processes (several devices, or `shared_memory`),
        page-locked on one GPU (it crosses without blocking, and PyTorch reuses it from chunk to chunk:
        a fresh 1080p chunk costs about five times as much to fill, its pages faulted in one by one),
        else ordinary."""
        if self._shared_memory is not None:
            return self._shared_memory(shape)
        if len(self.devices) > 1:
            return self._pool().take(shape)
        return torch.empty(shape, dtype=torch.uint8, pin_memory=self.device.type == "cuda")

    def spread(self, job: Job, items: Iterable[Any], tiles_per_chunk: int,
               starts_run: Callable[[Any], bool] | None = None, run_length: int = 1) -> Iterator[Any]:
        """`job.run` over chunks (items) on the process of each device (DevicePool.map), the processes
        started on first use; results in chunk order, the same as one device's. `starts_run`: chunks that
        must stay with the one before in the same process unless it says they start a run (of about
        `run_length` chunks): each run goes whole to one process."""
        batch_items = -(-self.batch_size // tiles_per_chunk) + 1
        if starts_run is not None:
            return self._pool().map(job, items, max(run_length, batch_items), batch_items, starts_run)
        return self._pool().map(job, items, segment_length(self.batch_size, tiles_per_chunk), batch_items)

    def _pool(self) -> DevicePool:
        if self._device_pool is None or self._device_pool.closed:
            self._device_pool = DevicePool(self.model.path, self.devices, self._device_options,
                                           self._device_threads, f"{__name__}:device_process_engine")
            if set(self._device_pool.model_ids) != {self.model.model_id}:  # the folder changed on disk
                self._device_pool.close()
                raise WeightsError(f"{self.model.path} no longer holds model {self.model.model_id}; "
                                   "load it again")
        return self._device_pool

    def close(self) -> None:
        """Stop the coding and device processes (they also stop when the program ends); coding goes
        on here."""
        if self._coding_pool is not None:
            self._coding_pool.close()
            self._coding_pool, self.coding_workers = None, 0
        if self._device_pool is not None:
            self._device_pool.close()
            self._device_pool = None

    def autocast(self, device: torch.device | None = None):
        """bf16 on a GPU (`device`, or the engine's first), nothing on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=(device or self.device).type == "cuda")


def _map_rows(value, fn: Callable[[torch.Tensor], torch.Tensor]):
    """`fn` applied to every tensor in value (a tensor, a dataclass or a tuple of them)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map_rows(v, fn) for v in value)
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _map_rows(getattr(value, f.name), fn)
                                             for f in dataclasses.fields(value)})
    return value


def _default_coding_workers(cfg: ModelConfig, cores: int, shares: int) -> int:
    """Coding workers for each of `shares` processes that run a model on a GPU (the Engine's docstring)."""
    if cfg.rate_distortion:
        return (cores - shares) // shares
    return min(8, cores // (2 * shares))
