"""What a decoded chunk costs to cross from a device process to the parent, as the device pool sends
it (fresh memory moved into a fresh shared segment each chunk) and from shared buffers that the
device process reuses and the parent keeps mapped (the lever named in docs/performance.md).

    python scripts/shared_memory_speed.py --size 1920x1080 --chunks 16
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np
import torch
import torch.multiprocessing as mp

RING = 5  # buffers a reusing device process cycles through; the parent keeps as many mapped


def _device(results, shape: tuple[int, ...], chunks: int, reuse: bool, done) -> None:
    frames = torch.randint(0, 256, shape, dtype=torch.uint8)  # stands for the chunk's decoded frames
    ring = [torch.empty(shape, dtype=torch.uint8).share_memory_() for _ in range(RING)] if reuse else []
    seconds = []
    for i in range(chunks):
        out = None if reuse else frames.clone()  # the frames in (pinned) memory of the process's own
        start = time.perf_counter()
        if reuse:
            out = ring[i % RING]
            out.copy_(frames)
        else:
            out.share_memory_()  # what queueing a tensor outside shared memory does: a copy into a new segment
        results.put(out)
        seconds.append(time.perf_counter() - start)
    results.put(statistics.median(seconds))
    done.wait()  # the parent maps each segment through this process's file descriptors


def measure(shape: tuple[int, ...], chunks: int, reuse: bool) -> tuple[float, float]:
    """Median seconds a chunk on the device process's side and on the parent's (copying it out)."""
    context = mp.get_context("spawn")
    results, done = context.Queue(maxsize=2), context.Event()
    process = context.Process(target=_device, args=(results, shape, chunks, reuse, done))
    process.start()
    out = np.zeros(shape, dtype=np.uint8)
    held = collections.deque(maxlen=RING)
    seconds = []
    for _ in range(chunks):
        chunk = results.get()
        start = time.perf_counter()
        out[:] = chunk.numpy()
        seconds.append(time.perf_counter() - start)
        held.append(chunk)
    device_side = results.get()
    done.set()
    process.join()
    return device_side, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=17, help="frames a chunk")
    parser.add_argument("--chunks", type=int, default=16)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    shape = (args.frames, height, width, 3)
    print(f"chunks of {args.frames} x {width} x {height} x 3 bytes, medians of {args.chunks}")
    for reuse in (False, True):
        device_side, parent_side = measure(shape, args.chunks, reuse)
        name = "reused shared buffers" if reuse else "a fresh segment each chunk"
        print(f"{name:<28} device process {1000 * device_side:6.1f} ms, parent {1000 * parent_side:6.1f} ms "
              f"({1000 * (device_side + parent_side) / args.frames:.2f} ms a frame together)")


if __name__ == "__main__":
    main()
