"""v3's rate-distortion latent: gain vectors per rate point and a hyperprior entropy model.

A v3 model (config `rate_points` > 0) sends its encoder's latents as integers, and
pays for them in bits under an entropy model it learns with the rest of the network:

* **Rate points.** Rate point r scales the latent by a learned gain vector before
  rounding (one per channel, for the structural latent and for the 1D tokens) and by
  a learned inverse gain after: a larger gain, a finer step, more bits. Between two
  points the gains interpolate geometrically, so one model spans every rate.
* **Hyperprior.** The gained latents are laid on the patch grid (the structural
  latent and every temporal group's 1D tokens as channels; a dropped 1D token is 0)
  and a small convolutional encoder makes a hyper-latent at half the grid's side. Its
  rounded values are sent first, each under a zero-mean Gaussian of a learned scale
  per channel; from them a hyper decoder predicts a mean and a log-scale for every
  latent value, which is sent as round(y - mean) under a Gaussian of that scale.

* **Temporal prior** (config `temporal_prior`). A chunk that follows another is coded
  knowing the previous chunk (the same tile, at the same rate point): the hyper
  encoder sees its gained latent beside the chunk's own (the encoder has it exactly,
  before any coding), and a 1 x 1 convolution of its restored planes (what a decoder
  has) and their magnitudes shifts every predicted mean and log-scale. Both start at
  zero, and a key chunk has no previous chunk (zeros): it is coded as without.

Training replaces rounding by uniform noise for the rate and rounds straight through
for the decoder (as learned image codecs do); evaluation rounds, and its bits are the
ideal code length of what a file would hold. The hyper decoder is built of plain
convolutions and ReLUs so that, once exported, it can run in exact integer arithmetic
on any device (what the range coder needs: both sides must derive identical tables).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..bitstream.hyperprior_coding import (ACTIVATION_LIMIT, SCALE_MAX, SCALE_MIN, HyperpriorTables,
                                           IntegerHyperDecoder)
from .config import ModelConfig

# neighbouring rate points start this factor apart (their lambdas are 3x apart: steps about sqrt(3)), the middle at 1
GAIN_SPREAD = 1.7


def gaussian_bits(values: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """-log2 of the mass of the unit-wide bin around each value under N(mean, scale)."""
    scale = scale.clamp(SCALE_MIN, SCALE_MAX)
    centred = (values - mean).abs()  # the mass of the upper tail is computed where it does not cancel
    upper = torch.special.ndtr((0.5 - centred) / scale)
    lower = torch.special.ndtr((-0.5 - centred) / scale)
    return -torch.log2((upper - lower).clamp(min=1e-9))


class ChunkContext(NamedTuple):
    """What a chunk leaves the next one's temporal prior: its gained latent planes as the encoder has them
    and as a decoder restores them (rounded about their predicted means), (B, planes, grid, grid) each."""

    gained: Tensor
    restored: Tensor


class HyperPrior(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.grid % 2:
            raise ValueError(f"a hyperprior needs an even patch grid, not {cfg.grid}")
        self.cfg = cfg
        c, h, r = cfg.latent_channels, cfg.hyper_channels, cfg.rate_points
        self.groups = (cfg.frames - 1) // cfg.enc_temporal_patch  # temporal groups of 1D tokens
        planes = (1 + self.groups) * c
        # log-gains (R, 2, C): [r, 0] the structural latent's, [r, 1] the 1D tokens'
        start = (torch.arange(r, dtype=torch.float32) - (r - 1) / 2) * math.log(GAIN_SPREAD)
        self.log_gains = nn.Parameter(start[:, None, None].expand(r, 2, c).clone())
        self.log_inverse_gains = nn.Parameter(-self.log_gains.detach().clone())
        self.planes = planes
        context = 2 if cfg.temporal_prior else 1  # the hyper encoder also sees the previous chunk's planes
        self.hyper_encoder = nn.Sequential(nn.Conv2d(context * planes, 2 * h, 3, padding=1), nn.ReLU(),
                                           nn.Conv2d(2 * h, h, 4, stride=2, padding=1))
        self.hyper_log_scale = nn.Parameter(torch.zeros(h))
        # upsampling as a convolution at the low resolution followed by a pixel shuffle, so that exported
        # it is two plain convolutions
        self.hyper_decoder = nn.Sequential(nn.Conv2d(h, 4 * h, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(),
                                           nn.Conv2d(h, 2 * planes, 3, padding=1))
        nn.init.zeros_(self.hyper_decoder[-1].weight)  # starts predicting mean 0, scale 1
        nn.init.zeros_(self.hyper_decoder[-1].bias)
        # no bias: a key chunk's zeros leave the prediction as it is
        self.temporal = nn.Conv2d(2 * planes, 2 * planes, 1, bias=False) if cfg.temporal_prior else None
        if self.temporal is not None:  # both start blind to the previous chunk: a key chunk's coding at first
            nn.init.zeros_(self.temporal.weight)
            with torch.no_grad():
                self.hyper_encoder[0].weight[:, planes:] = 0

    # ------------------------------------------------------------------ layout

    def to_grid(self, structural: Tensor, tokens_1d: Tensor, home_slot: Tensor) -> Tensor:
        """(B, S, C) and (B, N, C) in slot order -> (B, (1 + G) C, grid, grid): the structural latent,
        then each temporal group's 1D tokens at their homes."""
        b, s, c = structural.shape
        grid = self.cfg.grid
        homes = tokens_1d[:, home_slot].reshape(b, self.groups, s, c)
        planes = torch.cat([structural[:, None], homes], dim=1)  # (B, 1 + G, S, C)
        return planes.permute(0, 1, 3, 2).reshape(b, (1 + self.groups) * c, grid, grid)

    def from_grid(self, planes: Tensor, home_slot: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of `to_grid`."""
        b, c = planes.shape[0], self.cfg.latent_channels
        tokens = planes.reshape(b, 1 + self.groups, c, -1).permute(0, 1, 3, 2)  # (B, 1 + G, S, C)
        homes = tokens[:, 1:].reshape(b, -1, c)
        return tokens[:, 0], homes[:, torch.argsort(home_slot)]

    # ------------------------------------------------------------------ gains

    def gains(self, rate: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) rate points, fractional between two points -> gains and inverse gains, (B, 2, C) each."""
        r = rate.float().clamp(0, self.cfg.rate_points - 1)
        low = r.floor().long()
        high = (low + 1).clamp(max=self.cfg.rate_points - 1)
        frac = (r - low.float())[:, None, None]
        def blend(table: Tensor) -> Tensor:
            return ((1 - frac) * table[low] + frac * table[high]).exp()
        return blend(self.log_gains), blend(self.log_inverse_gains)

    # ------------------------------------------------------------------ the entropy model

    def parameters_from(self, z_hat: Tensor, previous: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Rounded hyper-latent (and, with a temporal prior, the previous chunk's restored planes; None for
        a key chunk) -> per latent value mean and log-scale, (B, (1 + G) C, grid, grid) each."""
        out = self.hyper_decoder(z_hat)
        if self.temporal is not None and previous is not None:
            out = out + self.temporal(torch.cat([previous, previous.abs()], dim=1))
        mean, log_scale = out.chunk(2, dim=1)
        return mean, log_scale

    def _hyper_latent(self, y: Tensor, previous_gained: Tensor | None) -> Tensor:
        if self.temporal is None:
            return self.hyper_encoder(y)
        previous = torch.zeros_like(y) if previous_gained is None else previous_gained
        return self.hyper_encoder(torch.cat([y, previous], dim=1))

    def forward(self, structural: Tensor, tokens_1d: Tensor, keep: Tensor, rate: Tensor, home_slot: Tensor,
                mode: str, previous: ChunkContext | None = None) -> tuple[Tensor, Tensor, Tensor, ChunkContext]:
        """Gain, code and restore the latents at each sample's rate point.

        mode "train": noise for the rate, rounding straight through for the decoder; "round": what a
        file holds; "none": the latents unrounded (the ceiling), bits as "round". `previous`: what the
        previous chunk left (temporal prior; None: key chunks).
        Returns the structural latent and 1D tokens the decoder sees, the (B,) bits of each chunk
        (hyper-latent, structural latent and kept 1D tokens) and, detached, what the next chunk's
        temporal prior sees.
        """
        if mode not in ("train", "round", "none"):
            raise ValueError(f"mode must be train, round or none, not {mode!r}")
        # in float32 whatever the autocast around it: a mean in bf16 is off by up to half a step at 100
        with torch.autocast(structural.device.type, enabled=False):
            return self._code(structural.float(), tokens_1d.float(), keep, rate, home_slot, mode, previous)

    def _code(self, structural: Tensor, tokens_1d: Tensor, keep: Tensor, rate: Tensor, home_slot: Tensor,
              mode: str, previous: ChunkContext | None) -> tuple[Tensor, Tensor, Tensor, ChunkContext]:
        gain, inverse = self.gains(rate)
        kept = self.to_grid(torch.ones_like(structural[..., :1]), keep[..., None].float(), home_slot)
        kept = kept.repeat_interleave(self.cfg.latent_channels, dim=1)  # (B, planes, grid, grid) of 0 / 1
        y = self._planes(structural, tokens_1d, gain, kept, home_slot)
        z = self._hyper_latent(y, None if previous is None else previous.gained.float())
        training = mode == "train"
        z_coded = z + (torch.rand_like(z) - 0.5) if training else torch.round(z)
        # the hyper decoder sees what will be sent, straight through in training
        z_hat = z + (torch.round(z) - z).detach() if training else z_coded
        mean, log_scale = self.parameters_from(z_hat, None if previous is None else previous.restored.float())
        rounded = torch.round(y - mean) + mean
        noisy = y + (torch.rand_like(y) - 0.5) if training else rounded
        bits = self._bits(z_coded, noisy, mean, log_scale, kept)
        if training:
            y_hat = y + (rounded - y).detach()
        else:
            y_hat = rounded if mode == "round" else y
        s_hat, t_hat = self.from_grid(y_hat, home_slot)
        return (s_hat * inverse[:, None, 0], t_hat * inverse[:, None, 1], bits,
                ChunkContext(y.detach(), (rounded * kept).detach()))

    # ------------------------------------------------------------------ what the codec asks

    @torch.no_grad()
    def gained_planes(self, structural: Tensor, tokens_1d: Tensor, rate: Tensor, kept: Tensor, home_slot: Tensor
                      ) -> Tensor:
        """The encoder's side of a file: the gained latent laid out as planes (B, planes, G, G), the values
        not sent (`kept` planes False) zeroed."""
        with torch.autocast(structural.device.type, enabled=False):
            return self._planes(structural.float(), tokens_1d.float(), self.gains(rate)[0], kept, home_slot)

    @torch.no_grad()
    def hyper_latent(self, y: Tensor, previous_gained: Tensor | None = None) -> Tensor:
        """The rounded hyper-latent (B, h, G/2, G/2) a file sends for `gained_planes` y (`previous_gained`:
        the previous chunk's, for a temporal prior; zeros for a key chunk)."""
        with torch.autocast(y.device.type, enabled=False):
            return torch.round(self._hyper_latent(y, previous_gained)).clamp(-127, 127)

    @torch.no_grad()
    def estimated_bits(self, y: Tensor, z: Tensor, kept: Tensor, previous_restored: Tensor | None = None) -> Tensor:
        """(B,) bits that units of `gained_planes` y and `hyper_latent` z will take, from the float entropy model:
        the ideal code length of the hyper-latent and of the kept values, each rounded about its predicted
        mean (`previous_restored`: the chunk before's restored planes, for a temporal prior)."""
        with torch.autocast(y.device.type, enabled=False):
            mean, log_scale = self.parameters_from(z, previous_restored)
            return self._bits(z, torch.round(y - mean).clamp(-127, 127) + mean, mean, log_scale, kept)

    def _planes(self, structural: Tensor, tokens_1d: Tensor, gain: Tensor, kept: Tensor | float, home_slot: Tensor
                ) -> Tensor:
        """The gained latents laid out as planes, the values not sent (`kept` 0) zeroed."""
        return self.to_grid(structural * gain[:, None, 0], tokens_1d * gain[:, None, 1], home_slot) * kept

    def _bits(self, z: Tensor, values: Tensor, mean: Tensor, log_scale: Tensor, kept: Tensor) -> Tensor:
        """(B,) bits of a hyper-latent under its channels' Gaussians and of the kept values under theirs."""
        z_scale = self.hyper_log_scale.exp()[None, :, None, None]
        z_bits = gaussian_bits(z, torch.zeros_like(z), z_scale).flatten(1).sum(1)
        return z_bits + (gaussian_bits(values, mean, log_scale.exp()) * kept).flatten(1).sum(1)

    def restore(self, planes: Tensor, rate: Tensor, home_slot: Tensor) -> tuple[Tensor, Tensor]:
        """The decoder's side: restored planes (B, planes, G, G) at each unit's rate point -> the structural
        latent and 1D tokens the decoder network sees."""
        _, inverse = self.gains(rate)
        structural, tokens_1d = self.from_grid(planes, home_slot)
        return structural * inverse[:, None, 0], tokens_1d * inverse[:, None, 1]

    @torch.no_grad()
    def shipped_tables(self, hidden_peak: float) -> HyperpriorTables:
        """The entropy model a file is coded with: the hyper decoder in integer arithmetic, its hidden
        activations resolved as finely as `hidden_peak` (the largest seen, with room to spare) allows,
        and the tables."""
        exponent = math.floor(math.log2(ACTIVATION_LIMIT / (2 * max(hidden_peak, 1e-3))))
        decoder = IntegerHyperDecoder.from_float(self.hyper_decoder[0], self.hyper_decoder[-1], exponent, self.temporal)
        return HyperpriorTables.build(decoder, self.hyper_log_scale.exp().cpu().numpy())

    @torch.no_grad()
    def hidden_peak(self, structural: Tensor, tokens_1d: Tensor, home_slot: Tensor) -> float:
        """The largest hidden activation of the hyper decoder over every rate point, for these latents."""
        peak = 0.0
        for rate in range(self.cfg.rate_points):
            gain, _ = self.gains(torch.full((structural.shape[0],), float(rate), device=structural.device))
            y = self._planes(structural.float(), tokens_1d.float(), gain, 1.0, home_slot)  # every value kept
            hidden = self.hyper_decoder[:3](torch.round(self._hyper_latent(y, None)))
            peak = max(peak, hidden.max().item())
        return peak

    def extra_repr(self) -> str:
        return f"rate_points={self.cfg.rate_points}, hyper_channels={self.cfg.hyper_channels}"

