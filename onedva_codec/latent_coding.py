"""Latents to bytes and back: uniform scalar quantization, then zstd.

A latent value z of channel c becomes the int8 symbol round((z - mean_c) / (std_c * step)),
clipped to [-127, 127]; mean, std and step are stored in every file's header, so a
file decodes without the model card's statistics.

A tile's symbols (structural tokens, then the kept 1D tokens) are laid out channel
by channel and compressed as one zstd frame. Channel-major order groups values of
similar spread, which zstd's literal coder exploits; at level 1 it comes within 1%
of level 19 at a fiftieth of the time, which matters because rate control
compresses every tile at many lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import zstandard
from torch import Tensor

from .errors import FormatError

ENTROPY_CODER = "zstd-channel-major"
ZSTD_LEVEL = 1
SYMBOL_LIMIT = 127


@dataclass(frozen=True)
class Quantizer:
    step: float
    mean: tuple[float, ...]  # per channel
    std: tuple[float, ...]

    def _scale(self, like: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(self.mean, device=like.device, dtype=torch.float32)
        scale = torch.tensor(self.std, device=like.device, dtype=torch.float32) * self.step
        return mean, scale

    def quantize(self, latents: Tensor) -> Tensor:
        """(..., C) float latents -> (..., C) int8 symbols, on the same device."""
        mean, scale = self._scale(latents)
        symbols = torch.round((latents.float() - mean) / scale)
        return symbols.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).to(torch.int8)

    def dequantize(self, symbols: Tensor) -> Tensor:
        mean, scale = self._scale(symbols)
        return symbols.float() * scale + mean


def pack_tile(symbols: np.ndarray) -> bytes:
    """(tokens, C) int8 symbols -> one zstd frame."""
    planar = np.ascontiguousarray(symbols.T)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False).compress(planar.tobytes())


def unpack_tile(data: bytes, tokens: int, channels: int) -> np.ndarray:
    """Inverse of `pack_tile`."""
    expected = tokens * channels
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise FormatError(f"latent data does not decompress ({exc})") from None
    if len(raw) != expected:
        raise FormatError(f"latent data holds {len(raw)} values where {expected} were expected")
    return np.frombuffer(raw, dtype=np.int8).reshape(channels, tokens).T
