"""A producer thread a bounded number of items ahead of its consumer.

The codec runs its CPU work (demuxing and converting frames, unpacking latents,
drawing noise, compressing the output video) beside the model this way.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Produce `items` in a background thread, at most `depth` ahead of the consumer.

    CPU work (demuxing and converting frames, unpacking latents, drawing noise) then
    overlaps with model work on the GPU; the bounded queue keeps memory bounded.
    An exception in the producer is re-raised in the consumer.
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
        worker.join()
