"""A PNG grid of decoded frames: rows are frames of the clip, columns the original and odva at each quality.

Usage: python scripts/frame_grid.py CLIP -o grid.png [--qualities 0,1] [--steps 1] [--frames 0,16,33]
       [--weights DIR] [--device cpu]
Each column is labelled with its quality, bits per pixel (whole .odva file) and PSNR (mean over frames, as
`odva bench` reports it).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from onedva_codec import Codec
from onedva_codec.ratecontrol import RateOptions
from onedva_codec.metrics import psnr
from onedva_codec.pixels import frames_to_model
from onedva_codec.video_io import VideoReader

LABEL_HEIGHT = 18


def clip_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return psnr(frames_to_model(a), frames_to_model(b)).mean().item()


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
    columns = [("original", clip)]
    for quality in (float(q) for q in args.qualities.split(",")):
        data = codec.encode_array(clip, fps, RateOptions(quality))
        decoded = codec.decode_array(data, steps=args.steps)
        bpp = len(data) * 8 / (t * h * w)
        columns.append((f"q {quality:g}: {bpp:.3f} bpp, {clip_psnr(clip, decoded):.1f} dB", decoded))

    grid = Image.new("RGB", (w * len(columns), LABEL_HEIGHT + h * len(shown)), "white")
    draw = ImageDraw.Draw(grid)
    for c, (label, video) in enumerate(columns):
        draw.text((c * w + 4, 3), label, fill="black")
        for r, index in enumerate(shown):
            grid.paste(Image.fromarray(video[index]), (c * w, LABEL_HEIGHT + r * h))
    grid.save(args.output)
    print(f"wrote {args.output}: frames {args.frames}, model {codec.loaded.model_id}, "
          f"{codec.loaded.card.decoding_steps(args.steps)} step(s)")


if __name__ == "__main__":
    main()
