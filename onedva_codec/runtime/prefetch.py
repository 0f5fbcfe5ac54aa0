"""A producer thread a bounded number of items ahead of its consumer.

The codec runs its CPU work (demuxing and converting frames, unpacking latents,
drawing noise, compressing the output video) beside the model this way, and a
decode runs its model in such a thread while the main thread writes frames.

When the consumer stops (it had enough, or Ctrl-C), the producer is told: long work
in a producer thread calls `check_cancelled` between its steps (a decode, before each
model call) and ends there. The consumer waits for that at most `abandon_after`
seconds, if given, and otherwise until the producer has stopped.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_producer = threading.local()  # the stop event of the prefetch whose producer this thread is


class Cancelled(Exception):
    """Raised in a producer thread whose consumer has stopped."""


def check_cancelled() -> None:
    """In a producer thread of `prefetch`: raise Cancelled once its consumer has stopped. Elsewhere: nothing."""
    stop = getattr(_producer, "stop", None)
    if stop is not None and stop.is_set():
        raise Cancelled


def prefetch(items: Iterable[T], depth: int = 2, abandon_after: float | None = None) -> Iterator[T]:
    """Produce `items` in a background thread, at most `depth` ahead of the consumer.

    CPU work (demuxing and converting frames, unpacking latents, drawing noise) then
    overlaps with model work on the GPU; the bounded queue keeps memory bounded.
    An exception in the producer is re-raised in the consumer. `abandon_after`: when
    the consumer stops, wait at most this long for the producer (only for producers
    that share nothing the consumer will close, such as a decode's model work).
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(entry: tuple) -> bool:
        """Put entry in the queue unless the consumer stops first (then a put would wait forever)."""
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        _producer.stop = stop
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((done, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            offer((done, exc))

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=abandon_after)
