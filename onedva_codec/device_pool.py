"""One process per device: how encoding and decoding spread over several GPUs.

Threads of one process do not scale: the model's Python and the tile pipeline share one
interpreter lock, and two H200s decoded one step no faster than one (docs/performance.md). Here
each device gets a process of its own, spawned once and kept, with its own Engine (model copy,
coding workers, pipeline).

A video's chunks go to the processes in segments, runs of consecutive chunks whose tiles fill
whole batches: segment j to process j mod n. Each process batches its chunks exactly as one device
batches the whole video, so every batch holds the same tiles, and every output is the same as one
device's (devices of one kind). Chunk pixels and decoded frames cross in shared memory (torch
tensors through torch.multiprocessing queues); chunk records and symbols are pickled.
"""

from __future__ import annotations

import math
import os
import pickle
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol

import torch
import torch.multiprocessing as mp

from .coding_pool import become_worker

_END = "end of items"  # after a job's last item, on a process's job queue
_DONE = object()  # after the last item's process number, on the parent's order queue
_POLL_S = 0.5  # how often a waiting parent checks that its processes still run
_QUEUED_ITEMS = 4  # chunks waiting for each process: enough to keep it fed, few in memory
# Queues' semaphores are unlinked by multiprocessing's resource tracker when a run is interrupted; it
# warns on standard error after odva's one line. The tracker is a process of its own, started with
# these options.
_QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


class Job(Protocol):
    """Work a device process runs over a stream of items, one result per item, in order."""

    def run(self, engine, items: Iterator[Any]) -> Iterator[Any]: ...


def segment_length(batch_size: int, tiles_per_chunk: int) -> int:
    """Chunks in the shortest run whose tiles fill whole batches."""
    return batch_size // math.gcd(batch_size, tiles_per_chunk)


def _serve(weights: str, device: str, options: dict, threads: int, jobs: mp.Queue, results: mp.Queue) -> None:
    """A device process: load the model, then run jobs until told to stop (None)."""
    # The kernel's parent-death signal follows the thread that started a process, and a pool may be
    # started by a passing thread (a decode's prefetch thread): watch the parent process instead.
    become_worker(end_with_parent=False)
    threading.Thread(target=_end_with, args=(os.getppid(),), name="odva-parent-watch", daemon=True).start()
    torch.set_num_threads(threads)
    from .engine import Engine  # here, not at the top: engine.py imports this module

    try:
        engine = Engine(weights, device=device, **options)
    except BaseException as exc:
        results.put(("error", _picklable(exc)))
        return
    results.put(("ready", engine.loaded.model_id))
    for job in iter(jobs.get, None):
        try:
            for result in job.run(engine, iter(jobs.get, _END)):
                results.put(("item", result))
        except BaseException as exc:  # the parent raises it and starts the processes afresh
            results.put(("error", _picklable(exc)))
            return


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    os._exit(1)


def _picklable(exc: BaseException) -> BaseException:
    """The exception itself if it can cross to the parent, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle means the same
        return RuntimeError(f"{type(exc).__name__}: {exc}")


@dataclass
class _Worker:
    device: str
    process: mp.Process
    jobs: mp.Queue
    results: mp.Queue


class DevicePool:
    """A process per device, each with the model of `weights`, the Engine `options` and `threads` for
    torch's CPU work."""

    def __init__(self, weights: Path, devices: list[torch.device], options: dict, threads: int):
        context = mp.get_context("spawn")  # CUDA cannot be forked
        if _QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(_QUIET_TRACKER)
        self._workers = []
        for device in devices:
            jobs, results = context.Queue(maxsize=_QUEUED_ITEMS), context.Queue(maxsize=2)
            process = context.Process(target=_serve, args=(str(weights), str(device), options, threads, jobs, results),
                                      name=f"odva-{device}", daemon=True)
            process.start()
            self._workers.append(_Worker(str(device), process, jobs, results))
        self.closed = False
        try:  # each process's model id once it is ready, or the error that stopped it
            self.model_ids = [self._next_result(worker) for worker in self._workers]
        except BaseException:
            self.close()
            raise

    def map(self, job: Job, items: Iterable[Any], segment: int) -> Iterator[Any]:
        """job.run over the items, spread in segments of `segment` items; results in item order.

        A caller that stops early (or an error) leaves the processes mid-job: they are stopped, and
        the Engine starts new ones for its next video."""
        for worker in self._workers:
            worker.jobs.put(job)
        order: queue.Queue = queue.Queue()
        stop = threading.Event()

        def feed() -> None:
            try:
                for i, item in enumerate(items):
                    k = (i // segment) % len(self._workers)
                    order.put(k)
                    self._put(self._workers[k].jobs, item, stop)
                for worker in self._workers:
                    self._put(worker.jobs, _END, stop)
                order.put(_DONE)
            except BaseException as exc:  # e.g. a damaged input video: the caller gets it in order
                order.put(exc)

        feeder = threading.Thread(target=feed, name="odva-feeder", daemon=True)
        feeder.start()
        finished = False
        try:
            while (k := order.get()) is not _DONE:
                if isinstance(k, BaseException):
                    raise k
                yield self._next_result(self._workers[k])
            finished = True
        finally:
            if not finished:
                stop.set()
                self.close(at_once=True)
            feeder.join(timeout=None if finished else _POLL_S)  # it may wait on a slow input: it is a daemon

    @staticmethod
    def _put(jobs: mp.Queue, item: Any, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                jobs.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _next_result(self, worker: _Worker) -> Any:
        while True:
            try:
                kind, value = worker.results.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not worker.process.is_alive():
                    raise RuntimeError(f"the process for {worker.device} stopped "
                                       f"(exit code {worker.process.exitcode})") from None
        if kind == "error":
            raise value
        return value

    def close(self, at_once: bool = False) -> None:
        """Stop every process: between jobs they end on their own, mid-job (`at_once`) they are
        terminated."""
        if self.closed:
            return
        self.closed = True
        for worker in self._workers:
            try:
                worker.jobs.put_nowait(None)
            except queue.Full:
                pass
        for worker in self._workers:
            worker.process.join(timeout=0 if at_once else 5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.jobs.cancel_join_thread()
            worker.results.cancel_join_thread()
