"""One process per device: how encoding and decoding spread over several GPUs.

Threads of one process do not scale: the model's Python and the tile pipeline share one
interpreter lock, and two H200s decoded one step no faster than one (docs/performance.md). Here
each device gets a process of its own, spawned once and kept, with its own Engine (model copy,
coding workers, pipeline), made by a function the pool is named (`start_engine`, "module:function"),
so that this module depends on no Engine.

A video's chunks go to the processes in segments, runs of consecutive chunks whose tiles fill
whole batches: segment j to process j mod n. Each process batches its chunks exactly as one device
batches the whole video, so every batch holds the same tiles, and every output is the same as one
device's (devices of one kind). Chunk pixels and decoded frames cross in shared-memory buffers that
each side reuses (shared_buffers.py); chunk records and symbols are pickled.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import pickle
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from .prefetch import check_cancelled
from .workers import become_worker

if TYPE_CHECKING:
    import torch

    from .shared_buffers import BufferReceiver
# Nothing heavy is imported at the top: a device process unpickles its target from this module while
# it still takes Ctrl-C as an error, and only then ignores it and imports torch.

_END = "end of items"  # after a job's last item, on a process's job queue
_DONE = object()  # after the last item's process number, on the parent's order queue
_POLL_S = 0.5  # how often a waiting parent checks that its processes still run
_FEEDER_GRACE_S = 10.0
# Chunks sent to a process and not yet back: a whole run and two more, so that the next process's run
# is never held back (runs of small tiles are up to a batch of chunks long), but at most this many
# bytes of pixels (runs of 4K chunks would hold gigabytes), unless a batch needs more chunks.
_IN_FLIGHT_SPARE = 2
_IN_FLIGHT_BYTES = 2 << 30
# Queues' semaphores are unlinked by multiprocessing's resource tracker when a run is interrupted; it
# warns on standard error after odva's one line. The tracker is a process of its own, started with
# these options.
_QUIET_TRACKER = "ignore::UserWarning:multiprocessing.resource_tracker"


class Job(Protocol):
    """Work a device process runs over a stream of items, one result per item, in order, given the model
    (what it is) and the engine (how it runs)."""

    def run(self, model, engine, items: Iterator[Any]) -> Iterator[Any]: ...


def segment_length(batch_size: int, tiles_per_chunk: int) -> int:
    """Chunks in the shortest run whose tiles fill whole batches."""
    return batch_size // math.gcd(batch_size, tiles_per_chunk)


def _serve(weights: str, device: str, options: dict, threads: int, start_engine: str, jobs: multiprocessing.Queue,
           results: multiprocessing.Queue, result_returns: multiprocessing.Queue,
           item_returns: multiprocessing.Queue) -> None:
    """A device process: load the model and start its engine (`start_engine`, "module:function", called
    with the weights, the device, the memory results are made in and the engine's options), then run
    jobs until told to stop (None). Tensors in results
    go out in buffers of this process's, given back on `result_returns`; the parent's buffers, in
    which tensors of items come, go back on `item_returns`."""
    # The kernel's parent-death signal follows the thread that started a process, and a pool may be
    # started by a passing thread (a decode's prefetch thread): watch the parent process instead.
    become_worker(end_with_parent=False)
    # Started as a daemon so that it never outlives the parent; but a daemon may not start processes,
    # and the coding workers are this process's children.
    multiprocessing.current_process().daemon = False
    threading.Thread(target=_end_with, args=(os.getppid(),), name="odva-parent-watch", daemon=True).start()
    import torch

    from .shared_buffers import BufferReceiver, BufferSender, CudaPinning
    importlib.import_module("torch.multiprocessing")  # registers how tensors cross in shared memory
    torch.set_num_threads(threads)
    item_returns.cancel_join_thread()  # a few numbers the parent no longer needs once this ends
    pinning = CudaPinning(torch.device(device)) if device.startswith("cuda") else None
    sender, receiver = BufferSender(result_returns, pinning), BufferReceiver(item_returns, pinning)

    try:  # decoded frames are made in the buffers they leave in
        module, function = start_engine.split(":")
        model, engine = getattr(importlib.import_module(module), function)(weights, device, sender.take, options)
    except BaseException as exc:
        results.put(("error", _picklable(exc)))
        return
    results.put(("ready", model.model_id))
    for job in iter(jobs.get, None):
        try:
            for result in job.run(model, engine, (receiver.unpack(item) for item in iter(jobs.get, _END))):
                results.put(("item", sender.pack(result)))
        except BaseException as exc:  # the parent raises it and starts the processes afresh
            results.put(("error", _picklable(exc)))
            return


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    os._exit(1)


def _size(item: Any) -> int:
    """Bytes of the tensors in an item (a tensor, or a tuple holding some); records count as none."""
    import torch
    parts = item if isinstance(item, tuple) else (item,)
    return sum(part.nbytes for part in parts if isinstance(part, torch.Tensor))


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
    process: multiprocessing.Process
    jobs: multiprocessing.Queue
    results: multiprocessing.Queue
    result_returns: multiprocessing.Queue
    received: BufferReceiver  # of the process's result buffers


class DevicePool:
    """A process per device, each with the model of `weights` and an engine started by `start_engine` with
    `options`, and `threads` for torch's CPU work."""

    def __init__(self, weights: Path, devices: list[torch.device], options: dict, threads: int, start_engine: str):
        from .shared_buffers import BufferReceiver, BufferSender
        importlib.import_module("torch.multiprocessing")  # registers how tensors cross in shared memory
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        if _QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(_QUIET_TRACKER)
        self._item_returns = context.Queue()
        self._items = BufferSender(self._item_returns)  # chunk pixels, to every process
        self._workers = []
        for device in devices:
            jobs, results, result_returns = context.Queue(), context.Queue(maxsize=2), context.Queue()
            process = context.Process(target=_serve, args=(str(weights), str(device), options, threads, start_engine,
                                                           jobs, results, result_returns, self._item_returns),
                                      name=f"odva-{device}", daemon=True)
            process.start()
            self._workers.append(_Worker(str(device), process, jobs, results, result_returns,
                                         BufferReceiver(result_returns)))
        self.closed = False
        try:  # each process's model id once it is ready, or the error that stopped it
            self.model_ids = [self._next_result(worker) for worker in self._workers]
        except BaseException:
            self.close()
            raise

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uninitialised uint8 memory in a shared buffer, for an item's pixels: filled in place, it crosses
        to a process without a copy."""
        return self._items.take(shape)

    def map(self, job: Job, items: Iterable[Any], segment: int, batch_items: int,
            starts_segment: Callable[[Any], bool] | None = None) -> Iterator[Any]:
        """job.run over the items, spread in segments of `segment` items; results in item order.
        `batch_items`: the most items one batch of the job can span (sent whatever their bytes, or a
        process would wait for the rest of its batch while the parent waits for its result).
        `starts_segment`: where the items themselves say where a segment begins (a run of chunks that
        depend on each other, from its key chunk), segments of any length, each to the next process.

        A caller that stops early (or an error) leaves the processes mid-job: they are stopped, and
        the Engine starts new ones for its next video."""
        for worker in self._workers:
            worker.jobs.put(job)
        order: queue.Queue = queue.Queue()  # (process, item size) of each item sent, then _DONE
        stop = threading.Event()
        sent = [[0, 0] for _ in self._workers]  # items and bytes of each process not yet back
        back = threading.Condition()

        def feed() -> None:
            try:
                k = -1
                for i, item in enumerate(items):
                    if starts_segment is None:
                        k = (i // segment) % len(self._workers)
                    elif starts_segment(item) or i == 0:  # it sees every item, the first too
                        k = (k + 1) % len(self._workers)
                    size = _size(item)
                    with back:
                        back.wait_for(lambda: stop.is_set() or sent[k][0] < batch_items or (
                            sent[k][0] < segment + _IN_FLIGHT_SPARE and sent[k][1] + size <= _IN_FLIGHT_BYTES))
                        if stop.is_set():
                            return
                        sent[k][0] += 1
                        sent[k][1] += size
                    order.put((k, size))
                    self._workers[k].jobs.put(self._items.pack(item, k))
                for worker in self._workers:
                    worker.jobs.put(_END)
                order.put(_DONE)
            except BaseException as exc:  # e.g. a damaged input video: the caller gets it in order
                order.put(exc)
            finally:  # the items' own threads (a video being read) stop here, before their source closes
                getattr(items, "close", lambda: None)()

        feeder = threading.Thread(target=feed, name="odva-feeder", daemon=True)
        feeder.start()
        finished = False
        try:
            while (entry := order.get()) is not _DONE:
                if isinstance(entry, BaseException):
                    raise entry
                k, size = entry
                result = self._workers[k].received.unpack(self._next_result(self._workers[k]))
                with back:
                    sent[k][0] -= 1
                    sent[k][1] -= size
                    back.notify()
                yield result
            finished = True
        finally:
            if not finished:
                with back:
                    stop.set()
                    back.notify()
                self.close(at_once=True)
            # Stopped early, it ends at its next item; a pipe that sends nothing more keeps it waiting,
            # so it is a daemon, given a while.
            feeder.join(timeout=None if finished else _FEEDER_GRACE_S)

    def _next_result(self, worker: _Worker) -> Any:
        while True:
            try:
                kind, value = worker.results.get(timeout=_POLL_S)
                break
            except queue.Empty:
                check_cancelled()  # waiting in a producer thread whose consumer stopped (Ctrl-C)
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
            worker.jobs.put_nowait(None)
        for worker in self._workers:
            worker.process.join(timeout=0 if at_once else 5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            for channel in (worker.jobs, worker.results, worker.result_returns):
                channel.cancel_join_thread()
        self._item_returns.cancel_join_thread()
