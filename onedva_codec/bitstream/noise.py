"""The format's noise stream: what a decoder starts each unit (a tile of a chunk) from.

The file's seed and the unit's place fix the noise, whatever the batching, so that decoding a file
twice, or on another batch size or device list, gives the same frames (docs/format.md). The encoder
draws the same stream when its search decodes through the model.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor
from torch.profiler import record_function


def unit_generator(*place: int | str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by a unit's place (its parts joined by ':', e.g. seed, chunk, tile), so that
    what it draws does not depend on batching."""
    digest = hashlib.blake2b(":".join(map(str, place)).encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1)


def unit_noise(seed: int, chunk: int, tile: int, shape: tuple[int, ...], out: Tensor | None = None,
               device: torch.device | str = "cpu") -> Tensor:
    """The starting noise of one unit: fixed by the file's seed, independent of batching (into `out`
    if given). The format's stream is the CPU generator's; a GPU's generator (Philox), seeded alike,
    gives other numbers of the same distribution, the same on every GPU (`Engine(device_noise=True)`)."""
    generator = unit_generator(seed, chunk, tile, device=device)
    with record_function("odva.draw_noise"):
        return torch.randn(shape, generator=generator, out=out, device=device)
