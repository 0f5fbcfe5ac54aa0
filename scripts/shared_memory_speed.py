"""What a decoded chunk costs to cross from a device process to the parent: through a fresh shared
segment each chunk (what queueing a tensor does, and what the device pool did before), and through
odva's shared buffers (onedva_codec/runtime/shared_buffers.py: reused by the device process, kept mapped by
the parent, given back once the parent lets a chunk go).

    python scripts/shared_memory_speed.py --size 1920x1080 --chunks 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.multiprocessing as mp

from onedva_codec.runtime.shared_buffers import BufferReceiver, BufferSender


def _device(results, returns, shape: tuple[int, ...], chunks: int, reuse: bool, done) -> None:
    frames = torch.randint(0, 256, shape, dtype=torch.uint8)  # stands for the chunk's decoded frames
    sender = BufferSender(returns)
    seconds = []
    for _ in range(chunks):
        out = frames.clone()  # the frames in (pinned) memory of the process's own
        start = time.perf_counter()
        if reuse:
            out = sender.pack(out)  # a copy into a free buffer
        else:
            out.share_memory_()  # what queueing a tensor outside shared memory does: a copy into a new segment
        results.put(out)
        seconds.append(time.perf_counter() - start)
    results.put(statistics.median(seconds))
    done.wait()  # the parent maps each segment through this process's file descriptors


def measure(shape: tuple[int, ...], chunks: int, reuse: bool) -> tuple[float, float]:
    """Median seconds a chunk on the device process's side and on the parent's (copying it out)."""
    context = mp.get_context("spawn")
    results, returns, done = context.Queue(maxsize=2), context.Queue(), context.Event()
    process = context.Process(target=_device, args=(results, returns, shape, chunks, reuse, done))
    process.start()
    receiver = BufferReceiver(returns)
    out = np.zeros(shape, dtype=np.uint8)
    seconds = []
    for _ in range(chunks):
        chunk = results.get()
        start = time.perf_counter()
        out[:] = receiver.unpack(chunk).numpy()  # the chunk read once, as a video writer does
        seconds.append(time.perf_counter() - start)
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
        name = "odva's shared buffers" if reuse else "a fresh segment each chunk"
        print(f"{name:<28} device process {1000 * device_side:6.1f} ms, parent {1000 * parent_side:6.1f} ms "
              f"({1000 * (device_side + parent_side) / args.frames:.2f} ms a frame together)")


if __name__ == "__main__":
    main()
