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

import ctypes
import multiprocessing
import signal
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from .latent_coding import TileCoder
from .prior import EntropyPrior

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends
_coder: TileCoder | None = None  # a worker's own coder, built once from the prior


def become_worker(end_with_parent: bool = True) -> None:
    """Set up a helper process of the codec's (a coding worker, a device process). `end_with_parent`:
    the kernel ends it when the thread that started it ends (so, only for helpers started by a
    thread that lives as long as its process)."""
    # Ctrl-C reaches every process of the terminal's group; the parent turns it into one line and
    # exit code 130, and a worker must not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if end_with_parent and sys.platform.startswith("linux"):  # and a worker ends with its parent, however
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_worker(prior: EntropyPrior) -> None:
    become_worker()
    global _coder
    _coder = TileCoder(prior)


def _decode(data: bytes, tokens: int) -> np.ndarray:
    return _coder.decode(data, tokens)


def _encode(symbols: np.ndarray) -> bytes:
    return _coder.encode(symbols)


class TileCoderPool:
    """`workers` processes coding tiles under one prior."""

    def __init__(self, prior: EntropyPrior, workers: int):
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.workers = workers
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                             initializer=_start_worker, initargs=(prior,))
        self._executor.submit(int).result()  # forks every worker now, before the codec starts its threads

    def decode(self, data: bytes, tokens: int) -> Future:
        """A future of TileCoder.decode(data, tokens); a damaged tile's FormatError comes out of it."""
        return self._executor.submit(_decode, data, tokens)

    def encode_all(self, tiles: Iterable[np.ndarray]) -> Iterator[bytes]:
        """TileCoder.encode of each tile, in order, with a few tiles per worker in flight (so a long
        video's symbols are never all in memory at once)."""
        pending: deque[Future] = deque()
        for symbols in tiles:
            pending.append(self._executor.submit(_encode, symbols))
            if len(pending) >= 4 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
