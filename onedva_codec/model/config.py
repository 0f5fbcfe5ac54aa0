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
    # v3 (model/hyperprior.py): the latents are trained for rate and distortion, with a gain vector per
    # rate point and a hyperprior of `hyper_channels` channels at half the grid's side. 0: v1/v2's
    # posterior latents, quantized with one fixed step and coded under a prior fitted after training.
    rate_points: int = 0
    hyper_channels: int = 0
    # v3 with a temporal prior: the hyperprior of a chunk also sees the previous chunk's restored latent
    # (the same tile, at the same rate point), so that what did not change costs few bits; key chunks have none
    temporal_prior: bool = False
    # The decoder also sees the last `previous_frames` frames it decoded of the same tile in the chunk before
    # (docs/model.md, "Previous frames"), so that a chunk continues the one before instead of starting afresh;
    # decoding then runs chunk after chunk from a key chunk. 0: every chunk is drawn alone.
    previous_frames: int = 0
    # A residual filter over the frames drawn: a 3 x 3 x 3 convolution (frames x height x width) of the head's
    # feature maps into `pixel_filter` channels, then one into RGB, added to the frames. The transformer draws
    # each patch from its own token and each pair of frames from one group, so it leaves steps at patch edges
    # and between groups; the filter draws across both. 0: none.
    pixel_filter: int = 0

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
        if self.rate_points < 0 or (self.rate_points > 0) != (self.hyper_channels > 0):
            raise ValueError("rate_points and hyper_channels go together: both positive (v3) or both 0")
        if self.rate_points and self.tokens_1d == "queries":
            raise ValueError("a v3 model's 1D tokens need homes (tokens_1d homes or residual)")
        if self.temporal_prior and not self.rate_points:
            raise ValueError("a temporal prior extends a v3 model's hyperprior: it needs rate_points")
        if self.previous_frames and not self.temporal_prior:
            raise ValueError("previous frames need the key chunks of a temporal prior: set temporal_prior")
        if not 0 <= self.previous_frames < self.frames:
            raise ValueError(f"previous_frames must be in [0, {self.frames})")
        if self.pixel_filter < 0:
            raise ValueError("pixel_filter is a number of channels, 0 for none")
        if self.rate_points and self.grid % 2:
            raise ValueError(f"a v3 model needs an even patch grid, not {self.grid}")
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

    @property
    def rate_distortion(self) -> bool:
        """A v3 model: latents trained for rate and distortion under a hyperprior."""
        return self.rate_points > 0

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
    "tiny-v3": ModelConfig(
        name="tiny-v3", tile=32, patch=8, latent_channels=8,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="residual", tokens_1d_in_sequence=False,
        rate_points=3, hyper_channels=8,
    ),
    "tiny-v3t": ModelConfig(
        name="tiny-v3t", tile=32, patch=8, latent_channels=8,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="residual", tokens_1d_in_sequence=False,
        rate_points=3, hyper_channels=8, temporal_prior=True,
    ),
    "tiny-v3tp": ModelConfig(
        name="tiny-v3tp", tile=32, patch=8, latent_channels=8,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="residual", tokens_1d_in_sequence=False,
        rate_points=3, hyper_channels=8, temporal_prior=True, previous_frames=2,
    ),
    "tiny-v3tpf": ModelConfig(
        name="tiny-v3tpf", tile=32, patch=8, latent_channels=8,
        enc_width=32, enc_depth=1, enc_heads=2,
        dec_width=32, dec_depth=1, dec_heads=2,
        head_channels=4, tile_overlap=8, tokens_1d="residual", tokens_1d_in_sequence=False,
        rate_points=3, hyper_channels=8, temporal_prior=True, previous_frames=2, pixel_filter=8,
    ),
    # The first shipped size: 14.6M parameters, 27.9 MiB in bf16 (limit 30 MiB).
    "s": ModelConfig(name="s"),
    # v2 (model.md): wider and deeper, a thicker head, 1D tokens with homes; ships with 8-bit weights.
    "m": ModelConfig(name="m", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8, dec_heads=5,
                     head_channels=16, tokens_1d="homes"),
    "m-residual": ModelConfig(name="m-residual", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320,
                              dec_depth=8, dec_heads=5, head_channels=16, tokens_1d="residual",
                              tokens_1d_in_sequence=False),
    # v3: m-residual's transformers with a latent four times as wide, trained for rate and distortion at six
    # rate points under a hyperprior (model.md, "v3"); grown from a v2 model its new channels start silent.
    "v3": ModelConfig(name="v3", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8, dec_heads=5,
                      head_channels=16, tokens_1d="residual", tokens_1d_in_sequence=False, latent_channels=64,
                      rate_points=6, hyper_channels=96),
    # v3 whose hyperprior also sees the previous chunk (model.md, "Temporal prior"); trained on pairs of chunks
    "v3t": ModelConfig(name="v3t", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8, dec_heads=5,
                       head_channels=16, tokens_1d="residual", tokens_1d_in_sequence=False, latent_channels=64,
                       rate_points=6, hyper_channels=96, temporal_prior=True),
    # v3t whose decoder also sees the last two frames it decoded of the chunk before (model.md, "Previous
    # frames"): no restart at every chunk; grown from v3t, its new layer starts at zero
    "v3tp": ModelConfig(name="v3tp", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8,
                        dec_heads=5, head_channels=16, tokens_1d="residual", tokens_1d_in_sequence=False,
                        latent_channels=64, rate_points=6, hyper_channels=96, temporal_prior=True, previous_frames=2),
    # v3tp with a pixel filter over the frames drawn (model.md, "Pixel filter"): it draws across the patch edges
    # and the temporal groups; grown from v3tp, its last layer starts at zero
    "v3tpf": ModelConfig(name="v3tpf", enc_width=320, enc_depth=6, enc_heads=5, dec_width=320, dec_depth=8,
                         dec_heads=5, head_channels=16, tokens_1d="residual", tokens_1d_in_sequence=False,
                         latent_channels=64, rate_points=6, hyper_channels=96, temporal_prior=True, previous_frames=2,
                         pixel_filter=32),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown model config {name!r}; known: {', '.join(CONFIGS)}") from None
