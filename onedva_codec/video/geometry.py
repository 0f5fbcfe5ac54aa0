"""Where frames meet the model's fixed chunk and tile size: all padding and cropping.

Time: a video is cut into chunks of `frames` frames, and a chunk ends early where a new
shot starts (scenes.py); a chunk of fewer real frames (the last, or one before a cut) is
padded by repeating its last frame, and the padding is dropped after decoding.

Space: a frame no larger than a tile is padded (edge pixels repeated) to the tile
and cropped back. A larger side is covered by overlapping tiles spread evenly from
edge to edge, each overlap at least `overlap` pixels; after decoding, tiles are
blended with linear ramps across the overlaps, so seams fade instead of jumping.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function

from .pixels import to_8bit


def ordinary_memory(shape: tuple[int, ...]) -> Tensor:
    """Uninitialised uint8 host memory: where chunks go when no one says (Engine.chunk_memory does)."""
    return torch.empty(shape, dtype=torch.uint8)


def chunk_frames(frames: Iterable[tuple[np.ndarray, bool]], length: int,
                 allocate: Callable[[tuple[int, ...]], Tensor] = ordinary_memory) -> Iterator[tuple[Tensor, int]]:
    """Group (H, W, 3) uint8 frames, each with whether it starts a new shot (scenes.mark_cuts), into
    (length, H, W, 3) uint8 tensors; yields (chunk, real frame count). A chunk ends after `length` frames
    or before a shot starts, and one of fewer real frames is padded by repeating its last. `allocate(shape)`:
    the uninitialised uint8 memory each chunk is stacked into (Engine.chunk_memory: where it crosses to
    the model fastest)."""
    buffer: list[np.ndarray] = []

    def padded() -> tuple[Tensor, int]:
        real = len(buffer)
        buffer.extend([buffer[-1]] * (length - real))
        chunk = allocate((length,) + buffer[0].shape)
        np.stack(buffer, out=chunk.numpy())
        buffer.clear()
        return chunk, real

    for frame, starts_shot in frames:
        if starts_shot and buffer:
            yield padded()
        buffer.append(frame)
        if len(buffer) == length:
            yield padded()
    if buffer:
        yield padded()


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


@functools.lru_cache(maxsize=256)
def _tile_weight(y: int, x: int, tile: int, height: int, width: int, overlap: int, device: torch.device) -> Tensor:
    """A tile's (tile, tile) blend weights on `device`, made once per grid position (read only)."""
    weight = _blend_ramp(y, tile, height, overlap)[:, None] * _blend_ramp(x, tile, width, overlap)[None]
    return weight.to(device)


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

    def split(self, video: np.ndarray | Tensor) -> Iterator[np.ndarray | Tensor]:
        """(T, H, W, 3) pixels, an array or a tensor on any device -> each tile's (T, tile, tile, 3)
        pixels, row-major over the grid: views of the frames, so that a large frame is never copied
        whole (nor held as floats), and on a GPU tiles are cut there, not on the host."""
        ph, pw = self.padded_size
        if (ph, pw) != (self.height, self.width):  # a side smaller than a tile: edge pixels repeated
            padding = ((0, 0), (0, ph - self.height), (0, pw - self.width), (0, 0))
            if isinstance(video, Tensor):  # a small frame: padded on the host
                video = torch.from_numpy(np.pad(video.cpu().numpy(), padding, mode="edge")).to(video.device)
            else:
                video = np.pad(video, padding, mode="edge")
        for y in self.ys:
            for x in self.xs:
                yield video[:, y:y + self.tile, x:x + self.tile]

    def assembler(self, host_memory: Callable[[tuple[int, ...]], Tensor] = ordinary_memory) -> "ChunkAssembler":
        """Blends one chunk's decoded tiles, fed in row-major order, into its frames; `host_memory(shape)`
        gives the uint8 memory the frames end in (Engine.chunk_memory: page-locked for a GPU, shared for a
        device process)."""
        return ChunkAssembler(self, host_memory)


class ChunkAssembler:
    """The inverse of `TileGrid.split`: decoded tiles in, blended (T, H, W, 3) uint8 frames out.

    Tiles arrive in row-major order and are blended with linear ramps across the overlaps. Only
    the pixel rows that a later tile row may still reach are held as floats: once a tile row is
    complete, the rows above the next tile row are final and go to 8 bits. A large frame is thus
    never held whole as floats. Each pixel's weighted sum runs over its tiles in the same order as
    a whole-frame sum would, so the frames do not depend on the frame's size or the batch.

    Everything stays on the tiles' device until the last tile: on a GPU the chunk then crosses to
    the host once, without waiting for work queued after it (`frames` waits for the copy alone).
    """

    def __init__(self, grid: TileGrid, host_memory: Callable[[tuple[int, ...]], Tensor] = ordinary_memory):
        self.grid = grid
        self._host_memory = host_memory
        self._pixels: Tensor | None = None  # (T, H, W, 3) uint8 on the tiles' device
        self._sum: Tensor | None = None  # (C, T, rows, padded width): weighted tiles of the open rows
        self._weight: Tensor | None = None  # (rows, padded width): their weights
        self._top = 0  # first open pixel row
        self._count = 0  # tiles taken so far
        self._host: Tensor | None = None  # the finished frames on the host
        self._copied: torch.cuda.Event | None = None  # recorded after the copy to the host

    def add(self, tile: Tensor) -> None:
        """Take the next tile, (C, T, tile, tile) in [-1, 1]."""
        grid, size = self.grid, self.grid.tile
        row, column = divmod(self._count, len(grid.xs))
        y, x = grid.ys[row], grid.xs[column]
        ph, pw = grid.padded_size
        if self._sum is None:
            shape = (tile.shape[1], grid.height, grid.width, 3)
            self._pixels = self._host_memory(shape) if tile.device.type == "cpu" else torch.empty(
                shape, dtype=torch.uint8, device=tile.device)
            self._sum = tile.new_zeros(tile.shape[:2] + (0, pw), dtype=torch.float32)
            self._weight = tile.new_zeros((0, pw), dtype=torch.float32)
        grow = y + size - self._top - self._sum.shape[2]
        if grow > 0:  # open the rows this tile reaches
            self._sum = torch.cat([self._sum, self._sum.new_zeros(self._sum.shape[:2] + (grow, pw))], dim=2)
            self._weight = torch.cat([self._weight, self._weight.new_zeros((grow, pw))])
        weight = _tile_weight(y, x, size, ph, pw, grid.overlap, tile.device)
        top = y - self._top
        self._sum[:, :, top:top + size, x:x + size] += tile.float() * weight
        self._weight[top:top + size, x:x + size] += weight
        self._count += 1
        if column == len(grid.xs) - 1:  # a tile row is complete
            self._close_rows(grid.ys[row + 1] if row + 1 < len(grid.ys) else ph)
        if self.done:
            self._to_host()

    def _close_rows(self, below: int) -> None:
        """Rows above `below` get no more tiles: blend them to 8 bits and let go of their floats."""
        n = below - self._top
        blended = self._sum[:, :, :n] / self._weight[:n]
        real = max(min(below, self.grid.height) - self._top, 0)
        if real:
            pixels = to_8bit(blended[:, :, :real, : self.grid.width]).movedim(0, -1)
            self._pixels[:, self._top:self._top + real] = pixels
        self._sum, self._weight = self._sum[:, :, n:], self._weight[n:]
        self._top = below

    def _to_host(self) -> None:
        if self._pixels.device.type != "cuda":
            self._host = self._pixels
            return
        self._host = self._host_memory(tuple(self._pixels.shape))
        self._host.copy_(self._pixels, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record(torch.cuda.current_stream(self._pixels.device))
        self._pixels = None

    @property
    def done(self) -> bool:
        return self._count == self.grid.count

    @property
    def frames(self) -> np.ndarray:
        """The chunk's (T, H, W, 3) uint8 frames, once every tile is in."""
        if not self.done:
            raise RuntimeError("the chunk still lacks tiles")
        if self._copied is not None:
            with record_function("odva.wait_for_frames"):
                self._copied.synchronize()
            self._copied = None
        return self._host.numpy()
