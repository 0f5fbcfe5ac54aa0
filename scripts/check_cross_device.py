"""A file encoded on the GPU decodes on the CPU, and the reverse, to the same symbols.

The bit stream depends on no floating point (integer tables, integer contexts; a v3
model's hyperprior in exact integer arithmetic), but the encoder's quantization runs on
the device: this checks end to end that what one device writes the other reads, tile by
tile (a chunk that depends on the one before decoded after it), and that the frames
agree within the float differences of the two devices' decoders.

    python scripts/check_cross_device.py [CLIP] [--weights DIR] [--frames N]

CLIP may be a .npy of uint8 frames (frames x height x width x 3) where PyAV is missing.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from onedva_codec import Codec, RateOptions
from onedva_codec.bitstream.container import OdvaReader

from multi_gpu_speed import clip_frames


def symbols(codec: Codec, data: bytes) -> list[np.ndarray]:
    """Every tile's decoded latents: a v1/v2 model's symbols, a v3 model's restored planes (a chunk that
    depends on the one before decoded after it)."""
    out: list[np.ndarray] = []
    with OdvaReader(data) as reader:
        keys = set(reader.header.key_chunks)
        previous: list[np.ndarray] = []
        for chunk in reader.chunks():
            context = [None] * len(chunk.tiles) if chunk.index in keys else previous
            previous = [codec.model.tile_coder.decode(t.data, codec.model.decode_count(t.kept),
                                                      *(() if c is None else (c,)))
                        for t, c in zip(chunk.tiles, context)]
            out += previous
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", nargs="?", default="docs/sample.mp4")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--frames", type=int, default=34)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    video, fps = clip_frames(args.clip, args.frames)
    gpu, cpu = Codec(args.weights, device="cuda", batch_size=16), Codec(args.weights, device="cpu", batch_size=3)
    for name, encoder, decoder in (("GPU -> CPU", gpu, cpu), ("CPU -> GPU", cpu, gpu)):
        data = encoder.encode_array(video, fps, RateOptions(quality=0.6))
        same = all(np.array_equal(a, b) for a, b in zip(symbols(encoder, data), symbols(decoder, data)))
        there = decoder.decode_array(data, steps=1).astype(int)
        here = encoder.decode_array(data, steps=1).astype(int)
        print(f"{name}: {len(data)} bytes, symbols identical: {same}, frames max |diff| "
              f"{np.abs(there - here).max()}, mean {np.abs(there - here).mean():.4f}")
    g = gpu.encode_array(video, fps, RateOptions(quality=0.6))
    c = cpu.encode_array(video, fps, RateOptions(quality=0.6))
    differ = sum(int((a != b).sum()) for a, b in zip(symbols(gpu, g), symbols(cpu, c)))
    print(f"symbols the two devices' encoders quantize differently: {differ} (float rounding at a step edge)")


if __name__ == "__main__":
    main()
