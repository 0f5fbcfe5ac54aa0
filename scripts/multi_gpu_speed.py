"""Encode and decode frames per second on one device and on several (`--device cuda:0,1`), in-process.

The clip is scaled to --size (1080p by default) and repeated forwards and backwards to --frames.
Each device list encodes and decodes the same frames; every list after the first must give the
same file and the same frames as the first, or the script says so and exits 1. Figures are medians
of --runs runs after one warm-up run (which also starts the device processes of a list of several),
synchronised on the GPU; a one-device row also has the peak GPU memory (`--size 3840x2160` for 4K).
Several devices share a video out in runs of chunks that fill whole batches (4 chunks, 68 frames,
at 1080p and batch 16), so give each device a few: e.g. --frames 1088 for 4 GPUs.

    python scripts/multi_gpu_speed.py docs/sample.mp4 --devices cuda:0 cuda:0,1 --frames 1088 --steps 1 8
    python scripts/multi_gpu_speed.py docs/sample.mp4 --devices cpu cpu,cpu --size 256x256 --frames 17 --steps 1

CLIP may be a .npy of uint8 frames (frames x height x width x 3) where PyAV is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import statistics
import time

import numpy as np
import torch

from onedva_codec import Codec, RateOptions
from onedva_codec.video.io import VideoReader


def clip_frames(clip: str, count: int) -> tuple[np.ndarray, float]:
    """The first `count` frames (uint8, frames x height x width x 3) and the frame rate of a video, or of
    a .npy of such frames (taken as 25 frames/s), for machines without FFmpeg."""
    if clip.endswith(".npy"):
        return np.load(clip)[:count], 25.0
    with VideoReader(clip) as reader:
        return np.stack(list(itertools.islice(reader.frames(), count))), float(reader.info.fps)


def load_frames(clip: str, width: int, height: int, count: int) -> tuple[np.ndarray, float]:
    video, fps = clip_frames(clip, count)
    scaled = torch.nn.functional.interpolate(torch.from_numpy(video).permute(0, 3, 1, 2).float(),
                                             size=(height, width), mode="bicubic", align_corners=False)
    video = scaled.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # forwards then backwards, so the repeated clip has no cut that would change its motion
    order = list(range(len(video))) + list(range(len(video) - 2, 0, -1))
    return video[[order[i % len(order)] for i in range(count)]], fps


def synchronize(codec: Codec) -> None:
    """Wait for the codec's GPU, so that a clock read after this counts all of its work (several
    devices: their processes have finished when the frames are back)."""
    if len(codec.devices) == 1 and codec.devices[0].type == "cuda":
        torch.cuda.synchronize(codec.devices[0])


def add_codec_options(parser: argparse.ArgumentParser) -> None:
    """The Codec's own settings, as `codec_from` reads them back."""
    parser.add_argument("--weights", default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="the model through torch.compile (odva --compile)")
    parser.add_argument("--coding-workers", type=int, default=None,
                        help="entropy-coding processes (default: the codec's; 0: on the calling thread)")
    parser.add_argument("--gpu-noise", action="store_true", help="starting noise drawn on the GPU (odva --gpu-noise)")


def codec_from(args: argparse.Namespace, device: str) -> Codec:
    return Codec(args.weights, device=device, batch_size=args.batch, compile=args.compile,
                 coding_workers=args.coding_workers, device_noise=args.gpu_noise)


def timed(codec: Codec, work, runs: int, label: str):
    def once():
        synchronize(codec)
        start = time.perf_counter()
        result = work()
        synchronize(codec)
        return result, time.perf_counter() - start

    result, warm_s = once()  # warm-up: kernels, allocator, the model copies' first batches
    print(f"  {label}: warm-up {warm_s:.2f} s", flush=True)  # so that a run cut short still says how far it got
    seconds = [once()[1] for _ in range(runs)]
    print(f"  {label}: " + ", ".join(f"{s:.2f}" for s in seconds) + " s", flush=True)
    return result, statistics.median(seconds), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--devices", nargs="+", required=True, help="device lists, e.g. cuda:0 cuda:0,1")
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=68)
    parser.add_argument("--steps", type=int, nargs="+", default=[1])
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--search", type=int, default=0, help="encoder-side search steps (odva encode --search)")
    parser.add_argument("--keyint", type=int, default=None,
                        help="a key chunk every N chunks (odva encode --keyint; 1: every chunk decodes alone)")
    add_codec_options(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    video, fps = load_frames(args.clip, width, height, args.frames)
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(f"{len(video)} frames of {width}x{height}; GPUs: {names or 'none'}")

    rows, reference = [], None
    for devices in args.devices:
        codec = codec_from(args, devices)
        one_gpu = len(codec.devices) == 1 and codec.devices[0].type == "cuda"
        if one_gpu:
            torch.cuda.reset_peak_memory_stats(codec.devices[0])
        rate = RateOptions(args.quality)
        data, enc_s, enc_runs = timed(codec, lambda: codec.encode_array(video, fps, rate, search_steps=args.search,
                                                                            key_interval=args.keyint),
                                      args.runs, f"{devices} encode")
        row = dict(devices=devices, frames=len(video), size=args.size, batch=codec.engine.batch_size, keyint=args.keyint,
                   compiled=args.compile, search=args.search, coding_workers=codec.engine.coding_workers,
                   gpu_noise=args.gpu_noise, bytes=len(data), file_md5=hashlib.md5(data).hexdigest(),
                   encode_fps=len(video) / enc_s, encode_runs_s=enc_runs)
        decoded = {}
        for steps in args.steps:
            decoded[steps], dec_s, dec_runs = timed(codec, lambda: codec.decode_array(data, steps=steps), args.runs,
                                                   f"{devices} decode {steps} step(s)")
            row[f"decode_{steps}_fps"] = len(video) / dec_s
            row[f"decode_{steps}_runs_s"] = dec_runs
            row[f"decode_{steps}_md5"] = hashlib.md5(decoded[steps].tobytes()).hexdigest()  # to compare versions
        if one_gpu:  # model, encode and decode together
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(codec.devices[0]) / 2 ** 20)
        if reference is None:
            reference = (data, decoded)
        row["same_file"] = data == reference[0]
        row["same_frames"] = all(np.array_equal(decoded[s], reference[1][s]) for s in args.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
        codec.close()
        codec = None  # its model leaves the GPU before the next list's peak memory is measured
        torch.cuda.empty_cache()

    base = rows[0]
    print("\n| devices | encode frames/s | " + " | ".join(f"decode {s} step(s) frames/s" for s in args.steps)
          + " | same file and frames |")
    print("|---|---|" + "---|" * len(args.steps) + "---|")
    for row in rows:
        cells = [f"{row['encode_fps']:.1f} ({row['encode_fps'] / base['encode_fps']:.2f}x)"]
        cells += [f"{row[f'decode_{s}_fps']:.1f} ({row[f'decode_{s}_fps'] / base[f'decode_{s}_fps']:.2f}x)"
                  for s in args.steps]
        print(f"| {row['devices']} | " + " | ".join(cells) + f" | {row['same_file'] and row['same_frames']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if not all(r["same_file"] and r["same_frames"] for r in rows):
        raise SystemExit("a device list gave another file or other frames than the first")


if __name__ == "__main__":
    main()
