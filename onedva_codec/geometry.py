"""Where frames meet the model's fixed chunk and tile size: all padding and cropping.

Time: a video is cut into chunks of `frames` frames; the last chunk is padded by
repeating its last frame, and the padding is dropped after decoding.

Space: a frame no larger than a tile is padded (edge pixels repeated) to the tile
and cropped back. A larger side is covered by overlapping tiles spread evenly from
edge to edge, each overlap at least `overlap` pixels; after decoding, tiles are
blended with linear ramps across the overlaps, so seams fade instead of jumping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor


def chunk_frames(frames: Iterable[np.ndarray], length: int) -> Iterator[tuple[np.ndarray, int]]:
    """Group (H, W, 3) frames into (length, H, W, 3) chunks; yields (chunk, real frame count)."""
    buffer: list[np.ndarray] = []
    for frame in frames:
        buffer.append(frame)
        if len(buffer) == length:
            yield np.stack(buffer), length
            buffer = []
    if buffer:
        real = len(buffer)
        buffer.extend([buffer[-1]] * (length - real))
        yield np.stack(buffer), real


def _tile_origins(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    if size <= tile:
        return (0,)
    count = math.ceil((size - overlap) / (tile - overlap))
    return tuple(round(i * (size - tile) / (count - 1)) for i in range(count))


def _blend_ramp(origin: int, tile: int, size: int, overlap: int) -> Tensor:
    """Weights of one tile along one axis: 1 inside, linear ramps where neighbours overlap."""
    weights = torch.ones(tile)
    if overlap:
        ramp = (torch.arange(overlap) + 0.5) / overlap
        if origin > 0:
            weights[:overlap] = ramp
        if origin + tile < size:
            weights[-overlap:] = ramp.flip(0)
    return weights


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    tile: int
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @classmethod
    def plan(cls, height: int, width: int, tile: int, overlap: int) -> "TileGrid":
        return cls(height, width, tile, overlap,
                   _tile_origins(height, tile, overlap), _tile_origins(width, tile, overlap))

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def padded_size(self) -> tuple[int, int]:
        return max(self.height, self.tile), max(self.width, self.tile)

    @property
    def content_size(self) -> tuple[int, int]:
        """Height and width of real (unpadded) pixels in every tile."""
        return min(self.height, self.tile), min(self.width, self.tile)

    def split(self, video: np.ndarray) -> Iterator[np.ndarray]:
        """(T, H, W, 3) pixels -> each tile's (T, tile, tile, 3) pixels, row-major over the grid: views of
        the frames, so that a large frame is never copied whole (nor held as floats)."""
        ph, pw = self.padded_size
        if (ph, pw) != (self.height, self.width):  # a side smaller than a tile: edge pixels repeated
            video = np.pad(video, ((0, 0), (0, ph - self.height), (0, pw - self.width), (0, 0)), mode="edge")
        for y in self.ys:
            for x in self.xs:
                yield video[:, y:y + self.tile, x:x + self.tile]

    def merge(self, tiles: Tensor) -> Tensor:
        """Inverse of `split`: blend (tiles, C, T, tile, tile) into (C, T, H, W)."""
        ph, pw = self.padded_size
        out = tiles.new_zeros(tiles.shape[1:3] + (ph, pw), dtype=torch.float32)
        total = tiles.new_zeros((ph, pw), dtype=torch.float32)
        origins = [(y, x) for y in self.ys for x in self.xs]
        for tile, (y, x) in zip(tiles, origins):
            wy = _blend_ramp(y, self.tile, ph, self.overlap)
            wx = _blend_ramp(x, self.tile, pw, self.overlap)
            weight = (wy[:, None] * wx[None]).to(out.device)
            out[..., y:y + self.tile, x:x + self.tile] += tile.float() * weight
            total[y:y + self.tile, x:x + self.tile] += weight
        return (out / total)[..., : self.height, : self.width]
