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
    # What the 1D tokens are (model.md, "1D tokens"):
    #   "queries":  learned queries anywhere in the chunk, seen by the decoder in its sequence only;
    #   "homes":    queries that each have a home (temporal group, position), in a coarse-to-fine
    #               order; the decoder also adds each kept token at its home, as the structural latent;
    #   "residual": each token is the encoder's feature at its home minus the structural latent there
    #               (what the temporal mean lacks), added at its home; no queries.
    tokens_1d: str = "queries"
    tokens_1d_in_sequence: bool = True  # the decoder also attends to the 1D tokens as tokens of their own

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
        if self.tokens_1d not in ("queries", "homes", "residual"):
            raise ValueError(f"tokens_1d must be queries, homes or residual, not {self.tokens_1d!r}")
        if self.tokens_1d == "queries" and not self.tokens_1d_in_sequence:
            raise ValueError("1D tokens without homes must be in the decoder's sequence")
        if self.enc_temporal_patch % self.dec_temporal_patch:
            raise ValueError("the encoder's temporal patch must be a multiple of the decoder's")

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
    # The same with token homes and residual 1D tokens, for the tests of those paths.
    "tiny-homes": ModelConfig(
        name="tiny-homes", tile=32, patch=8, latent_channels=4,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="homes",
    ),
    "tiny-residual": ModelConfig(
        name="tiny-residual", tile=32, patch=8, latent_channels=4,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="residual", tokens_1d_in_sequence=False,
    ),
    # The first shipped size: 14.6M parameters, 27.9 MiB in bf16 (limit 30 MiB).
    "s": ModelConfig(name="s"),
    # v2 (model.md): wider and deeper, a thicker head, 1D tokens with homes; ships with 8-bit weights.
    "m": ModelConfig(name="m", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8, dec_heads=5,
                     head_channels=16, tokens_1d="homes"),
    "m-residual": ModelConfig(name="m-residual", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320,
                              dec_depth=8, dec_heads=5, head_channels=16, tokens_1d="residual",
                              tokens_1d_in_sequence=False),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None
