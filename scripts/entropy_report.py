"""Where an .odva file's bytes go, and what the range coder saves over zstd on the same symbols.

For each clip and quality it encodes the clip with odva, decodes every tile's symbols
back from the file, and codes those very symbols again as the 1.0 format did
(zstd level 1, channel-major). The decoded frames depend on the symbols alone, so
both codings give identical frames; only the bytes differ. It also times the range
coder on this machine's CPU, per chunk, both ways.

    python scripts/entropy_report.py CLIP... [--weights DIR] [--qualities 0,0.5,1] [--frames N]

Needs the bench extra (zstandard). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import zstandard

from onedva_codec import Codec, RateOptions
from onedva_codec.bitstream.container import OdvaReader
from onedva_codec.video.io import VideoReader


def zstd_bytes(symbols: np.ndarray) -> int:
    """What the 1.0 format stored for these (tokens, C) symbols: one zstd frame, level 1, channel-major."""
    planar = np.ascontiguousarray(symbols.T)
    return len(zstandard.ZstdCompressor(level=1, write_checksum=False).compress(planar.tobytes()))


def measure(codec: Codec, clip: Path, quality: float, frames: int | None) -> dict:
    with VideoReader(clip) as reader:
        video = np.stack(list(itertools.islice(reader.frames(), frames)))
        fps = reader.info.fps
    return _account(codec, codec.encode_array(video, fps, RateOptions(quality=quality)))


def _account(codec: Codec, data: bytes) -> dict:
    coder, prior = codec.model.tile_coder, codec.model.prior
    s = codec.model.cfg.structural_tokens
    totals = dict(range_bytes=0, zstd_bytes=0, structural_bits=0.0, tokens_1d_bits=0.0, values=0,
                  encode_s=0.0, decode_s=0.0)
    with OdvaReader(data) as reader:
        header = reader.header
        for chunk in reader.chunks():
            for tile in chunk.tiles:
                tokens = s + tile.kept
                started = time.perf_counter()
                symbols = coder.decode(tile.data, tokens)
                decoded = time.perf_counter()
                assert coder.encode(symbols) == tile.data  # the file holds exactly what the coder makes
                totals["encode_s"] += time.perf_counter() - decoded
                totals["decode_s"] += decoded - started
                bits = prior.token_bits(symbols)
                totals["structural_bits"] += bits[:s].sum()
                totals["tokens_1d_bits"] += bits[s:].sum()
                totals["range_bytes"] += len(tile.data)
                totals["zstd_bytes"] += zstd_bytes(symbols)
                totals["values"] += symbols.size
        size = reader.file_size
    chunks = header.chunk_count
    ideal = totals["structural_bits"] + totals["tokens_1d_bits"]
    latent = totals["range_bytes"]
    return {
        "size": f"{header.width}x{header.height}", "frames": header.frames, "file_bytes": size,
        "latent_bytes": latent, "zstd_latent_bytes": totals["zstd_bytes"],
        "saving": 1 - latent / totals["zstd_bytes"],
        "bits_per_value": latent * 8 / totals["values"],
        "structural_share": totals["structural_bits"] / ideal, "tokens_1d_share": totals["tokens_1d_bits"] / ideal,
        "container_bytes": size - latent,
        "encode_ms_per_chunk": totals["encode_s"] / chunks * 1e3,
        "decode_ms_per_chunk": totals["decode_s"] / chunks * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--qualities", default="0,0.5,1")
    parser.add_argument("--frames", type=int, default=None, help="code only the first N frames of each clip")
    args = parser.parse_args()
    codec = Codec(args.weights, device="cpu")
    print(f"model {codec.model.model_id}, prior {codec.model.prior.sha256[:16]}")
    print("| clip | size | frames | quality | file bytes | latents: range coder | latents: zstd | saving | "
          "bits/value | structural / 1D share of bits | header+index+records | coder ms/chunk enc / dec (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for clip in args.clips:
        for quality in (float(q) for q in args.qualities.split(",")):
            r = measure(codec, clip, quality, args.frames)
            print(f"| {clip.name} | {r['size']} | {r['frames']} | {quality:g} | {r['file_bytes']} | "
                  f"{r['latent_bytes']} | {r['zstd_latent_bytes']} | {r['saving']:.1%} | {r['bits_per_value']:.3f} | "
                  f"{r['structural_share']:.0%} / {r['tokens_1d_share']:.0%} | {r['container_bytes']} | "
                  f"{r['encode_ms_per_chunk']:.1f} / {r['decode_ms_per_chunk']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
