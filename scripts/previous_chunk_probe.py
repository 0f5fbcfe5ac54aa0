"""How much of a chunk the previous chunk already shows: the case for a decoder that sees it.

odva codes and decodes every chunk (17 frames) alone. This codes each clip through real files and
compares, per clip (RGB PSNR, mean over frames):

- the codec's own frames, and its frames that open a chunk;
- each source frame against the one before it (what a frame-to-frame predictor starts from);
- each chunk's first source frame against the previous chunk's last *decoded* frame: what a decoder
  that saw its previous chunk's output would have for free, before spending a bit;
- each source frame against the one a chunk earlier.

Where the third figure is near the codec's own, a conditional decoder could spend the chunk's bits
on what changed instead of the whole picture.

    python scripts/previous_chunk_probe.py heldout256/movie-256.mkv heldout256/bikes-256.mkv [--quality 0.5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from onedva_codec import Codec, RateOptions
from onedva_codec.video.io import VideoReader


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def frames_of(path: Path) -> np.ndarray:
    with VideoReader(path) as reader:
        return np.stack(list(reader.frames()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--quality", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    codec = Codec(args.weights, device=args.device)
    span = codec.model.cfg.frames
    print("| clip | bpp | codec: all frames / chunks' first | previous source frame | previous chunk's last "
          "decoded frame, for a chunk's first | source a chunk back |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        coded, decoded = Path(tmp) / "clip.odva", Path(tmp) / "clip.mkv"
        for clip in args.clips:
            source = frames_of(clip)
            result = codec.encode_file(clip, coded, RateOptions(quality=args.quality), force=True)
            codec.decode_file(coded, decoded, steps=args.steps, force=True)
            output = frames_of(decoded)
            n, firsts = len(source), range(span, len(source), span)
            print(f"| {clip.name} | {result.bpp:.4f} "
                  f"| {np.mean([psnr(source[i], output[i]) for i in range(n)]):.2f} / "
                  f"{np.mean([psnr(source[k], output[k]) for k in firsts]):.2f} "
                  f"| {np.mean([psnr(source[i], source[i - 1]) for i in range(1, n)]):.2f} "
                  f"| {np.mean([psnr(source[k], output[k - 1]) for k in firsts]):.2f} "
                  f"| {np.mean([psnr(source[i], source[i - span]) for i in range(span, n)]):.2f} |")


if __name__ == "__main__":
    main()
