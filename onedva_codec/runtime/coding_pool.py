"""Entropy coding of many tiles on worker processes.

Coding one tile is a few dozen small numpy and range-coder calls (1.5 ms to encode a 256 x 256 x 17
tile, about 3 ms to decode one), all holding the GIL: on a GPU machine one thread of it limits
encoding and one-step decoding (docs/performance.md). The pool runs `TileCoder` in worker
processes, forked on Linux when the pool starts (as PyTorch's data loaders fork after CUDA is up:
a worker touches neither CUDA nor torch), so starting costs milliseconds and nothing is imported
again; elsewhere they are spawned, which runs the calling script's top level again (guard it with
`if __name__ == "__main__":`). Results come back in submission order and are the same bytes and
symbols as coding in-process.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Iterable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from ..bitstream.hyperprior_coding import HyperpriorCoder, HyperpriorTables
from ..bitstream.latent_coding import TileCoder
from ..bitstream.prior import EntropyPrior
from ..model.config import ModelConfig
from ..model.folder import tile_coder
from .workers import become_worker

_coder: TileCoder | HyperpriorCoder | None = None  # a worker's own coder, built once from the prior


def _start_worker(prior: EntropyPrior | HyperpriorTables, cfg: ModelConfig) -> None:
    become_worker()
    # One BLAS thread a worker: a v3 coder's integer hyper decoder is small matrix products, and a worker
    # forked with the parent's thread count per worker (16 on a 16-core GPU machine, times 8 workers) spends
    # its time contending for the cores (46 against 10 ms a tile with 8 workers on 2 cores).
    threadpool_limits(1)
    global _coder
    _coder = tile_coder(prior, cfg)


def _decode(data: bytes, count: int, *previous: np.ndarray) -> np.ndarray:
    return _coder.decode(data, count, *previous)


def _encode(tile: tuple) -> bytes:
    return _coder.encode(*tile)


def _encode_restoring(tile: tuple) -> tuple[bytes, np.ndarray]:
    return _coder.encode_restoring(*tile)


class TileCoderPool:
    """`workers` processes coding tiles under one prior (of a model of config `cfg`)."""

    def __init__(self, prior: EntropyPrior | HyperpriorTables, cfg: ModelConfig, workers: int):
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.workers = workers
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                             initializer=_start_worker, initargs=(prior, cfg))
        self._executor.submit(int).result()  # forks every worker now, before the codec starts its threads

    def decode(self, data: bytes, count: int, previous: np.ndarray | None = None) -> Future:
        """A future of the coder's decode(data, count) (count: tokens of a v1/v2 tile, kept 1D tokens of a
        v3 one; `previous`: the restored planes of the chunk before, for a chunk that depends on it); a
        damaged tile's FormatError comes out of it."""
        return self._executor.submit(_decode, data, count, *(() if previous is None else (previous,)))

    def encode_restoring(self, tile: tuple) -> Future:
        """A future of a v3 coder's encode_restoring(*tile): the bytes and the planes a decoder restores."""
        return self._executor.submit(_encode_restoring, tile)

    def encode_all(self, tiles: Iterable[tuple]) -> Iterator[bytes]:
        """The coder's encode(*tile) of each tile, in order, with a few tiles per worker in flight (so a
        long video's latents are never all in memory at once)."""
        pending: deque[Future] = deque()
        for tile in tiles:
            pending.append(self._executor.submit(_encode, tile))
            if len(pending) >= 4 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
