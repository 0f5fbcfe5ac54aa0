"""Model configurations: one dataclass, one registry of named sizes.

A chunk is `frames` = 1 + 16 frames of `tile` x `tile` pixels. The encoder sees
spatiotemporal patches of `enc_temporal_patch` x `patch` x `patch` pixels (the first
frame is replicated in front so that the 1 + 16 frames split evenly), and emits

* a structural latent: one token per spatial patch position (grid x grid tokens),
* 1D latents: one query per (temporal group, spatial position), i.e.
  (frames - 1) / enc_temporal_patch x grid x grid tokens, kept from the head,

each with `latent_channels` channels. The decoder denoises patches of
`dec_temporal_patch` x `patch` x `patch` pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    name: str
    frames: int = 17
    tile: int = 256
    patch: int = 16
    enc_temporal_patch: int = 4
    dec_temporal_patch: int = 2
    latent_channels: int = 16
    enc_width: int = 256
    enc_depth: int = 4
    enc_heads: int = 4
    dec_width: int = 256
    dec_depth: int = 7
    dec_heads: int = 4
    mlp_ratio: float = 4.0
    head_channels: int = 8  # feature maps between the pixel shuffle and the final conv
    tile_overlap: int = 64  # minimum overlap between neighbouring tiles, in pixels

    def __post_init__(self) -> None:
        if self.tile % self.patch:
            raise ValueError(f"tile {self.tile} is not a multiple of patch {self.patch}")
        for tp in (self.enc_temporal_patch, self.dec_temporal_patch):
            if (self.frames - 1) % tp:
                raise ValueError(f"frames - 1 = {self.frames - 1} is not a multiple of temporal patch {tp}")
        if self.enc_width % self.enc_heads or self.dec_width % self.dec_heads:
            raise ValueError("width must be a multiple of the number of heads")
        if not 0 <= self.tile_overlap < self.tile:
            raise ValueError("tile_overlap must be in [0, tile)")

    @property
    def grid(self) -> int:
        """Patches along each side of a tile."""
        return self.tile // self.patch

    @property
    def structural_tokens(self) -> int:
        return self.grid * self.grid

    @property
    def max_1d_tokens(self) -> int:
        return (self.frames - 1) // self.enc_temporal_patch * self.grid * self.grid

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**values)


CONFIGS: dict[str, ModelConfig] = {
    # For tests: a 32 x 32 tile, so that a 2-core CPU codes a chunk in milliseconds.
    "tiny": ModelConfig(
        name="tiny", tile=32, patch=8, latent_channels=4,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8,
    ),
    # The size we train and ship: 14.6M parameters, 27.9 MiB in bf16 (limit 30 MiB).
    "s": ModelConfig(name="s"),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None
