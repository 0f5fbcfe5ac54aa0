"""A PNG grid of decoded frames: rows are frames of the clip, columns the original and odva at each quality.

Usage: python scripts/frame_grid.py CLIP -o grid.png [--qualities 0,1] [--steps 1] [--frames 0,16,33]
       [--weights DIR] [--device cpu]
Each column is labelled with its quality, bits per pixel (whole .odva file) and PSNR (mean over frames, as
`odva bench` reports it); the grid is `odva compare`'s (onedva_codec/evaluation/compare.py).
"""

from __future__ import annotations

import argparse

import numpy as np

from onedva_codec import Codec
from onedva_codec.bitstream.ratecontrol import RateOptions
from onedva_codec.evaluation.compare import Column, Comparison, frame_grid
from onedva_codec.evaluation.metrics import psnr
from onedva_codec.video.io import VideoReader
from onedva_codec.video.pixels import frames_to_model


def column(name: str, clip: np.ndarray, decoded: np.ndarray, bpp: float, shown: list[int]) -> Column:
    per_frame = psnr(frames_to_model(clip), frames_to_model(decoded)).tolist()
    return Column(name, bpp, psnr=per_frame, shown=[decoded[i] for i in shown])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--qualities", default="0,1")
    parser.add_argument("--steps", type=int, default=None, help="decoding steps (default: the model's)")
    parser.add_argument("--frames", default="0,16,33", help="frames shown; the clip is coded up to the last")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    shown = [int(f) for f in args.frames.split(",")]
    with VideoReader(args.clip) as reader:
        fps = reader.info.fps
        frames = []
        for frame in reader.frames():
            frames.append(frame)
            if len(frames) > max(shown):
                break
    clip = np.stack(frames)
    codec = Codec(args.weights, device=args.device)
    t, h, w, _ = clip.shape
    columns = []
    for quality in (float(q) for q in args.qualities.split(",")):
        data = codec.encode_array(clip, fps, RateOptions(quality))
        columns.append(column(f"q {quality:g}", clip, codec.decode_array(data, steps=args.steps),
                              len(data) * 8 / (t * h * w), shown))
    frame_grid(Comparison(Column("original", 0.0, shown=[clip[i] for i in shown]), columns, shown)).save(args.output)
    print(f"wrote {args.output}: frames {args.frames}, model {codec.model.model_id}, "
          f"{codec.model.card.schedule(args.steps).steps} step(s)")


if __name__ == "__main__":
    main()
