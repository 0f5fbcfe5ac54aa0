"""Encode a video with a classical codec (as `odva bench` does) at the CRF whose bits per pixel come
nearest a target, e.g. an .odva file's: the other column of `odva compare`.

    python scripts/anchor_at_bpp.py docs/sample.mp4 --like sample.odva -o x264.mp4 [--anchor x264]

Tries every CRF of the codec's range (bisection would do, but 52 encodes of a short clip take
seconds) and keeps the one nearest the target bpp, counting the whole file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from onedva_codec import read_info
from onedva_codec.evaluation.bench.anchors import ANCHORS, encode_anchor
from onedva_codec.video.io import VideoReader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--like", type=Path, required=True, help="the .odva file whose bpp to match")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--anchor", default="x264", choices=sorted(ANCHORS))
    args = parser.parse_args()
    target = read_info(args.like).bpp
    with VideoReader(args.source) as reader:
        fps = reader.info.fps
        frames = np.stack(list(reader.frames()))
    pixels = frames.shape[0] * frames.shape[1] * frames.shape[2]
    highest = 63 if args.anchor == "av1" else 51
    best = min(((abs(len(data) * 8 / pixels - target), crf, data)
                for crf in range(0, highest + 1) for data in [encode_anchor(frames, fps, args.anchor, crf)]),
               key=lambda entry: entry[0])
    _, crf, data = best
    args.output.write_bytes(data)
    print(f"wrote {args.output}: {args.anchor} CRF {crf}, {len(data) * 8 / pixels:.4f} bpp "
          f"(target {target:.4f}, from {args.like})")


if __name__ == "__main__":
    main()
