"""How long the range coder takes to decode a tile of a model's files, on this machine's CPU, one core.

Encodes the first frames of a clip with the model at each quality, then decodes every tile's latents
from the file again and again (what a coding worker does per tile: a v1/v2 model's symbols under its
prior; a v3 model's integer hyper decoder and values under its scale tables) and prints the median
milliseconds per tile and the bytes per tile, of key chunks' tiles and, for a model with a temporal
prior, of the tiles of chunks that depend on the one before (decoded after it, as a decoder does).

    python scripts/coder_speed.py CLIP [--weights DIR] [--qualities 0,0.5,1] [--frames 17] [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np

from onedva_codec import Codec, RateOptions
from onedva_codec.bitstream.container import OdvaReader
from onedva_codec.video.io import VideoReader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--qualities", default="0,0.5,1")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    codec = Codec(args.weights, device="cpu")
    coder = codec.model.tile_coder
    with VideoReader(args.clip) as reader:
        video = np.stack(list(itertools.islice(reader.frames(), args.frames)))
        fps = reader.info.fps
    print(f"model {codec.model.model_id}; {args.clip.name}, {len(video)} frames of {video.shape[2]} x {video.shape[1]}")
    print("| quality | chunks | tiles | bytes a tile | decode ms a tile (median) |\n|---|---|---|---|---|")
    for quality in (float(q) for q in args.qualities.split(",")):
        with OdvaReader(codec.encode_array(video, fps, RateOptions(quality=quality))) as reader:
            keys = set(reader.header.key_chunks)
            chunks = list(reader.chunks())
        times: dict[str, list[float]] = {"key": [], "dependent": []}
        sizes: dict[str, list[int]] = {"key": [], "dependent": []}
        for _ in range(args.repeats):
            previous: list = []
            for chunk in chunks:
                kind = "key" if chunk.index in keys else "dependent"
                restored = []
                for t, tile in enumerate(chunk.tiles):
                    context = () if kind == "key" else (previous[t],)
                    started = time.perf_counter()
                    restored.append(coder.decode(tile.data, codec.model.decode_count(tile.kept), *context))
                    times[kind].append(time.perf_counter() - started)
                    sizes[kind].append(len(tile.data))
                previous = restored
        for kind in ("key", "dependent"):
            if times[kind]:
                count = sum(1 for c in chunks if (c.index in keys) == (kind == "key"))
                print(f"| {quality:g} | {count} {kind} | {len(sizes[kind]) // args.repeats} | "
                      f"{statistics.mean(sizes[kind]):.0f} | {1000 * statistics.median(times[kind]):.2f} |")


if __name__ == "__main__":
    main()
