"""How fast `odva decode` can write its output, apart from decoding: frames/s of the codec's own
VideoWriter for .y4m, .mkv and .mp4 at each libx264 preset, with file size and PSNR against the
frames given (the clip scaled to --size, 1080p by default). Medians of --runs runs.

    python scripts/writer_speed.py docs/sample.mp4 --presets medium veryfast ultrafast
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from multi_gpu_speed import load_frames

from onedva_codec.evaluation.metrics import psnr
from onedva_codec.video.io import VideoReader, VideoWriter
from onedva_codec.video.pixels import frames_to_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip")
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=34)
    parser.add_argument("--presets", nargs="+", default=["medium", "veryfast", "ultrafast"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    video, fps = load_frames(args.clip, width, height, args.frames)
    print(f"{len(video)} frames of {width}x{height}")
    print("| output | frames/s | MiB | PSNR against the frames written |\n|---|---|---|---|")
    outputs = [(".y4m", "medium"), (".mkv", "medium")] + [(".mp4", preset) for preset in args.presets]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, preset in outputs:
            path = Path(tmp) / f"out{kind}"
            seconds = []
            for _ in range(args.runs):
                started = time.perf_counter()
                writer = VideoWriter(path, kind, width, height, Fraction(fps).limit_denominator(1001000),
                                     mp4_preset=preset)
                for frame in video:
                    writer.write(frame)
                writer.close()
                seconds.append(time.perf_counter() - started)
            with VideoReader(path) as reader:
                # frame by frame: a 1080p clip as floats at once would take gigabytes
                fidelity = np.mean([psnr(frames_to_model(a[None]), frames_to_model(b[None])).item()
                                    for a, b in zip(video, reader.frames())])
            name = kind + (f", {preset}" if kind == ".mp4" else "")
            print(f"| {name} | {len(video) / statistics.median(seconds):.1f} | {path.stat().st_size / 2 ** 20:.1f} "
                  f"| {fidelity:.2f} dB |")


if __name__ == "__main__":
    main()
