"""Where encoding and decoding spend their time: the PyTorch profiler over one encode and one decode
per step count, after a warm-up of each.

The codec marks its stages (`odva.model`, `odva.unpack_latents`, `odva.draw_noise`, `odva.blend`,
`odva.wait_for_frames`, `odva.pack_latents`, `odva.wait_for_symbols`); the script prints, per run, the wall time, the time
inside each stage (summed over threads: stages on other threads overlap the main one) and the
costliest operators on the CPU and, on a GPU, in CUDA kernels. With --trace DIR it also writes a
Chrome trace per run (open in chrome://tracing or https://ui.perfetto.dev).

    python scripts/profile_codec.py docs/sample.mp4 --device cuda --steps 1 8 --trace prof
    python scripts/profile_codec.py docs/sample.mp4 --device cpu --size 256x256 --frames 17 --steps 1
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from multi_gpu_speed import add_codec_options, codec_from, load_frames, synchronize
from torch.profiler import ProfilerActivity, profile

from onedva_codec import Codec, RateOptions

STAGES = ("odva.model", "odva.unpack_latents", "odva.wait_for_symbols", "odva.draw_noise", "odva.blend",
          "odva.wait_for_frames", "odva.pack_latents")


def profiled(codec: Codec, name: str, work, trace: Path | None) -> None:
    work()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if codec.devices[0].type == "cuda" else [])
    # the codec's stages run on several threads: the producer, the noise pool, one per GPU
    every_thread = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    with profile(activities=activities, experimental_config=every_thread) as prof:
        started = time.perf_counter()
        work()
        synchronize(codec)
        wall = time.perf_counter() - started
    events = prof.key_averages()
    print(f"\n== {name}: {wall * 1000:.0f} ms wall")
    for event in events:
        if event.key in STAGES:
            print(f"  {event.key:<22} {event.cpu_time_total / 1000:8.1f} ms in {event.count} calls")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    if codec.devices[0].type == "cuda":
        print(events.table(sort_by="self_cuda_time_total", row_limit=12))
    if trace:
        trace.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            raw = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(raw)
            with open(raw, "rb") as src, gzip.open(trace / f"{name}.json.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--device", default="auto", help="e.g. cuda, cuda:0,1, cpu")
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=34)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--quality", type=float, default=0.5)
    add_codec_options(parser)
    parser.add_argument("--trace", type=Path, default=None, help="folder for Chrome traces")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    video, fps = load_frames(args.clip, width, height, args.frames)
    codec = codec_from(args, args.device)
    devices = ", ".join(map(str, codec.devices))
    print(f"{len(video)} frames of {width}x{height} on {devices}, batch {codec.engine.batch_size}")
    data = codec.encode_array(video, fps, RateOptions(args.quality))
    profiled(codec, "encode", lambda: codec.encode_array(video, fps, RateOptions(args.quality)), args.trace)
    for steps in args.steps:
        profiled(codec, f"decode-{steps}-steps", lambda: codec.decode_array(data, steps=steps), args.trace)


if __name__ == "__main__":
    main()
