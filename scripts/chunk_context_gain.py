"""What a context from the previous chunk would save the entropy coder: an estimate, not a codec.

The prior codes each chunk's symbols on their own (lattice contexts inside a chunk). This encodes
256 x 256 videos with every 1D token (`--quality 1`), reads the symbols back from the files, and
compares, on the pairs of consecutive chunks of the held-out clips, the ideal bits of tables fitted
to the training videos' pairs:

- as the shipped prior chooses them (its table of each value, its prediction), refitted on those
  pairs, so that both sides are fitted to the same data;
- with each table split by the previous chunk's symbol at the same position and channel: for
  structural values, clip(previous - the lattice prediction, -3, 3); for 1D tokens, the previous
  symbol's size (0 | 1 | 2-3 | 4+).

Training videos: the pack's training split, cut to their central 256 x 256 after scaling the short
side to 256. Held out: the bar clips (`odva-train heldout`).

    python scripts/chunk_context_gain.py --pack pack --heldout heldout256 [--weights weights]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from odva_train.pack import Pack

from onedva_codec import Codec, RateOptions
from onedva_codec.bitstream.container import OdvaReader
from onedva_codec.bitstream.prior import MAGNITUDE_EDGES, EntropyPrior
from onedva_codec.video.io import VideoReader

SPREAD = 3  # structural contexts: previous - prediction in -3..3
ESCAPE_BITS = 8  # a rough price of an escaped symbol's own code; escapes are rare at these radii


def chunk_symbols(codec: Codec, video: np.ndarray, fps: float) -> np.ndarray:
    """(T, 256, 256, 3) frames -> (chunks, S + N, C) symbols of every 1D token, through a real file."""
    data = codec.encode_array(video, fps, RateOptions(quality=1.0))
    full = codec.model.cfg.structural_tokens + codec.model.cfg.max_1d_tokens
    with OdvaReader(data) as reader:
        return np.stack([codec.model.tile_coder.decode(tile.data, codec.model.cfg.structural_tokens + tile.kept)
                         for chunk in reader.chunks() for tile in chunk.tiles
                         if codec.model.cfg.structural_tokens + tile.kept == full]).astype(np.int64)


def central_256(video: np.ndarray) -> np.ndarray:
    frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()
    scale = 256 / min(frames.shape[-2:])
    size = [max(256, round(side * scale)) for side in frames.shape[-2:]]
    frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    y, x = (size[0] - 256) // 2, (size[1] - 256) // 2
    return frames[:, :, y:y + 256, x:x + 256].round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def consecutive(videos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(previous, current) chunk pairs of the same video."""
    kept = [v for v in videos if len(v) > 1]
    return np.concatenate([v[:-1] for v in kept]), np.concatenate([v[1:] for v in kept])


def predictions(prior: EntropyPrior, symbols: np.ndarray) -> np.ndarray:
    """The lattice prediction of every structural value (0 where its pass has none)."""
    s = prior.structural_tokens
    prediction = np.zeros_like(symbols[:, :s])
    for k, kind in enumerate(prior.pass_kinds):
        if kind == "lattice":
            prediction[:, prior.passes[k]] = prior.context(symbols, k)[0]
    return prediction


def held_out_bits(fit: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], entries: int) -> float:
    """Ideal bits of `test` (contexts, entries) under smoothed histograms of `fit`'s."""
    contexts = int(max(fit[0].max(), test[0].max())) + 1
    counts = np.full((contexts, entries), 0.5)
    np.add.at(counts, (fit[0].ravel(), fit[1].ravel()), 1.0)
    probabilities = counts / counts.sum(axis=1, keepdims=True)
    bits = -np.log2(probabilities[test[0].ravel(), test[1].ravel()])
    return float(bits.sum() + ESCAPE_BITS * (test[1] == entries - 1).sum())


def contexts(prior: EntropyPrior, previous: np.ndarray, current: np.ndarray) -> dict[str, tuple]:
    s = prior.structural_tokens
    tables, entries = prior.codes(current)
    spread = np.clip(previous[:, :s] - predictions(prior, current), -SPREAD, SPREAD) + SPREAD
    size = np.searchsorted(np.array(MAGNITUDE_EDGES), np.abs(previous[:, s:]), side="left")
    return {
        "structural": (tables[:, :s], entries[:, :s]),
        "structural + previous chunk": (tables[:, :s] * (2 * SPREAD + 1) + spread, entries[:, :s]),
        "1D": (tables[:, s:], entries[:, s:]),
        "1D + previous chunk": (tables[:, s:] * (len(MAGNITUDE_EDGES) + 1) + size, entries[:, s:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", type=Path, default=Path("pack"))
    parser.add_argument("--heldout", type=Path, default=Path("heldout256"))
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    codec = Codec(args.weights, device="cpu")
    prior = codec.model.prior
    train = [chunk_symbols(codec, central_256(v), 25.0) for v in Pack(args.pack).videos("train")]
    held = []
    for clip in sorted(args.heldout.glob("*.mkv")):
        with VideoReader(clip) as reader:
            held.append(chunk_symbols(codec, np.stack(list(reader.frames())), float(reader.info.fps)))
    train_pairs, held_pairs = consecutive(train), consecutive(held)
    fit, test = contexts(prior, *train_pairs), contexts(prior, *held_pairs)
    pairs = len(held_pairs[1])
    entries = prior.tables.shape[1]
    print(f"model {codec.model.model_id}, prior {prior.sha256[:16]}; {len(train_pairs[1])} training "
          f"chunk pairs, {pairs} held-out")
    print("| values | bits a chunk, own chunk only | with the previous chunk | change |")
    print("|---|---|---|---|")
    totals = [0.0, 0.0]
    for part in ("structural", "1D"):
        alone = held_out_bits(fit[part], test[part], entries) / pairs
        joint = held_out_bits(fit[part + " + previous chunk"], test[part + " + previous chunk"], entries) / pairs
        totals = [totals[0] + alone, totals[1] + joint]
        print(f"| {part} | {alone:.0f} | {joint:.0f} | {joint / alone - 1:+.1%} |")
    print(f"| all | {totals[0]:.0f} | {totals[1]:.0f} | {totals[1] / totals[0] - 1:+.1%} |")


if __name__ == "__main__":
    main()
