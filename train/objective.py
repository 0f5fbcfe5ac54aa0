"""What each stage optimises: the trainable modules and the loss of one batch.

`Objective` is the module the distributed wrapper (DDP or FSDP) sees. Frozen
networks (LPIPS, the REPA teacher, a frozen LDM) are held outside it, so they are
neither synchronised nor checkpointed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from onedva_codec.bitstream.latent_coding import Quantizer
from onedva_codec.evaluation.lpips import LPIPS
from onedva_codec.model.network import Latents, OneDVA, full_tile_geometry
from onedva_codec.model.sampler import mix, velocity_target

from .config import TrainConfig
from .ldm import LatentDiT
from .losses import (LatentRate, RepaProjector, RepaTeacher, alignment_loss, flow_matching_loss, perceptual_loss,
                     repa_loss, temporal_loss)


@dataclass
class Frozen:
    """Networks that take part in the loss without being trained."""

    lpips: LPIPS | None = None
    teacher: RepaTeacher | None = None
    ldm: LatentDiT | None = None


@dataclass
class LatentStats:
    """Per-channel mean and std of the encoder's posterior means, for normalising latents."""

    mean: Tensor
    std: Tensor
    _quantizers: dict[float, Quantizer] = field(default_factory=dict, repr=False)

    def quantizer(self, step: float) -> Quantizer:
        """The codec's quantizer for these statistics, made once: reading them to the host syncs the GPU."""
        if step not in self._quantizers:
            self._quantizers[step] = Quantizer(step, tuple(self.mean.tolist()), tuple(self.std.tolist()))
        return self._quantizers[step]

    def normalise(self, z: Tensor) -> Tensor:
        return (z - self.mean) / self.std

    def restore(self, z: Tensor) -> Tensor:
        return z * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def sample_t(cfg: TrainConfig, batch: int, gen: torch.Generator, device: torch.device) -> Tensor:
    if cfg.t_mode == "one":
        return torch.ones(batch, device=device)
    t = torch.sigmoid(torch.randn(batch, generator=gen, device=device))
    at_one = torch.rand(batch, generator=gen, device=device) < cfg.t_one_share
    return torch.where(at_one, torch.ones_like(t), t)


def dropout_lengths(cfg: TrainConfig, motion: Tensor, n_max: int, gen: torch.Generator) -> Tensor:
    """Kept 1D lengths. "motion": round(s^ N eta) with eta = 2 sigmoid(z), z ~ N(0, 1); "uniform":
    any length equally likely, so that every slot trains at every budget. Some full, some none."""
    device = motion.device
    if cfg.kept_lengths == "all":
        return torch.full_like(motion, n_max, dtype=torch.long)
    if cfg.kept_lengths == "uniform":
        lengths = torch.randint(0, n_max + 1, motion.shape, generator=gen, device=device)
    else:
        eta = 2 * torch.sigmoid(torch.randn(motion.shape, generator=gen, device=device))
        lengths = torch.round(motion * n_max * eta).clamp(0, n_max).long()
    u = torch.rand(motion.shape, generator=gen, device=device)
    lengths = torch.where(u < cfg.full_share, torch.full_like(lengths, n_max), lengths)
    return torch.where((u >= cfg.full_share) & (u < cfg.full_share + cfg.none_share), torch.zeros_like(lengths),
                       lengths)


class Objective(nn.Module):
    def __init__(self, cfg: TrainConfig, model: OneDVA, projector: RepaProjector | None, ldm: LatentDiT | None,
                 frozen: Frozen, latent_stats: LatentStats | None):
        super().__init__()
        self.cfg = cfg
        self.model = model
        mcfg = model.cfg
        self.rate = (LatentRate(mcfg.structural_tokens, mcfg.max_1d_tokens, mcfg.latent_channels, cfg.quant_step)
                     if cfg.w_rate > 0 and not mcfg.rate_distortion else None)
        if mcfg.rate_distortion and len(cfg.lambdas) != mcfg.rate_points:
            raise ValueError(f"rd_lambdas has {len(cfg.lambdas)} values for the model's {mcfg.rate_points} rate points")
        self.register_buffer("lambdas", torch.tensor(cfg.lambdas if mcfg.rate_distortion else []), persistent=False)
        self.projector = projector
        self.ldm = ldm  # trained in the ldm stage only
        self.frozen = frozen
        self.latent_stats = latent_stats

    def forward(self, x0: Tensor, motion: Tensor, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """(B, 3, T, H, W) clips in [-1, 1] and their normalised motion scores -> loss, parts."""
        stage = self.cfg.stage_spec
        if not stage.decodes:
            return self._ldm_loss(x0, gen)
        cfg, model, mcfg = self.cfg, self.model, self.model.cfg
        pairs = mcfg.temporal_prior  # clips of two chunks: the batch becomes the first chunks, then the second
        if pairs:
            x0, motion = torch.cat(x0.split(mcfg.frames, dim=2)), motion.repeat(2)
        b, device = x0.shape[0], x0.device
        with torch.set_grad_enabled(stage.trains_encoder and torch.is_grad_enabled()):
            posterior = model.encode(x0, full_tile_geometry(mcfg, b, device))
        lengths = dropout_lengths(cfg, motion, mcfg.max_1d_tokens, gen)
        keep = Latents.keep_mask(lengths, mcfg.max_1d_tokens)
        parts = {}
        pixels = x0.shape[2] * x0.shape[3] * x0.shape[4]
        sample_weight = None
        if mcfg.rate_distortion:  # v3: each sample at a rate point of its own, its bits under the hyperprior
            rate = torch.randint(0, mcfg.rate_points, (b // 2 if pairs else b,), generator=gen, device=device)
            if pairs:  # a pair at one rate point, as in a file; its second chunk coded knowing the first
                rate = rate.repeat(2)
                latents, bits = model.code_chunk_pairs(posterior, keep, rate, "train")
                if mcfg.previous_frames:
                    latents = self._with_previous_frames(latents, x0.dtype, gen)
                parts["rate_key"] = (bits[: b // 2] / pixels).mean().detach()  # logged only
                parts["rate_next"] = (bits[b // 2:] / pixels).mean().detach()
            else:
                latents, bits, _ = model.code_latents(posterior, keep, rate, "train")
            parts["rate"] = (bits / pixels).mean()
            sample_weight = self.lambdas[rate] * 127.5 ** 2  # lambda on MSE in 0..255 units
        else:
            structural, tokens_1d = self._conditioning(posterior, gen)
            latents = Latents(structural, tokens_1d, keep)
        if self.rate is not None:
            kept = torch.cat([torch.ones_like(latents.keep[:, :1]).expand(-1, mcfg.structural_tokens), latents.keep],
                             dim=1)
            parts["rate"] = (self.rate(torch.cat([structural, tokens_1d], dim=1), kept) / pixels).mean()

        t = sample_t(cfg, b, gen, device)
        eps = torch.randn(x0.shape, generator=gen, device=device, dtype=x0.dtype)
        x_t = mix(x0, eps, t)
        if cfg.refine_share > 0:
            x_t = self._from_one_step_estimate(x_t, t, eps, latents, gen)
        tap = cfg.repa_block if self.projector is not None else None
        out = model.decoder(x_t, t, latents, tap_block=tap)
        x0_hat, tapped = out if tap is not None else (out, None)

        if sample_weight is None:
            parts["diff"] = flow_matching_loss(x0_hat, x0, t, cfg.x0_weight_cap)
        else:
            per_sample = flow_matching_loss(x0_hat, x0, t, cfg.x0_weight_cap, per_sample=True)
            parts["diff"] = (sample_weight * per_sample).mean()
            parts["mse"] = per_sample.detach().mean()  # logged only: comparable across rate points
        if cfg.w_temporal > 0:
            change = temporal_loss(x0_hat, x0, t, cfg.x0_weight_cap, self._error_before(latents, x0),
                                   latents.has_previous, per_sample=True)
            parts["temporal"] = (change if sample_weight is None else sample_weight * change).mean()
        if self.frozen.lpips is not None:
            frames = torch.stack([torch.randperm(mcfg.frames, generator=gen, device=device)[:cfg.perceptual_frames]
                                  for _ in range(b)])
            weight = (t < 1).float() if cfg.perc_below_one else None
            parts["perc"] = perceptual_loss(self.frozen.lpips, x0_hat, x0, frames, weight)
        if cfg.w_kl > 0 and stage.trains_encoder and cfg.latents == "kl" and not mcfg.rate_distortion:
            parts["kl"] = posterior.kl()
        if tapped is not None:
            n_groups = model.decoder.groups
            groups = torch.stack([torch.randperm(n_groups, generator=gen, device=device)[:cfg.repa_groups]
                                  for _ in range(b)])
            parts["repa"] = repa_loss(self.projector, self.frozen.teacher, tapped, x0, groups,
                                      mcfg.dec_temporal_patch)
        if cfg.w_align > 0:
            parts["align"] = alignment_loss(posterior.structural_mean, posterior.tokens_1d_mean)
        rd = mcfg.rate_distortion  # lambda is inside "diff", and bits are bits
        weights = {"diff": 1.0 if rd else cfg.w_diff, "perc": cfg.w_perc, "kl": cfg.w_kl, "repa": cfg.w_repa,
                   "align": cfg.w_align, "rate": 1.0 if rd else cfg.w_rate, "temporal": cfg.w_temporal,
                   "mse": 0.0, "rate_key": 0.0, "rate_next": 0.0}
        loss = sum(weights[k] * v for k, v in parts.items())
        return loss, parts

    def _from_one_step_estimate(self, x_t: Tensor, t: Tensor, eps: Tensor, latents: Latents,
                                gen: torch.Generator) -> Tensor:
        """For `refine_share` of the samples below t = 1: the decoder's one-step estimate from `eps`
        (no gradient), noised back to t with the same `eps`, which is what the refining sampler feeds
        the model; the target stays the clip, so these samples learn to correct that estimate."""
        chosen = (t < 1) & (torch.rand(t.shape, generator=gen, device=t.device) < self.cfg.refine_share)
        index = chosen.nonzero().squeeze(1)
        if index.numel() == 0:
            return x_t
        some = latents.select(index)
        with torch.no_grad():
            estimate = self.model.decoder(eps[index], torch.ones_like(t[index]), some).to(x_t.dtype)
        x_t = x_t.clone()
        x_t[index] = mix(estimate, eps[index], t[index])
        return x_t

    def _with_previous_frames(self, latents: Latents, dtype: torch.dtype, gen: torch.Generator) -> Latents:
        """Pairs' latents (first chunks, then second) with what a decoder of previous frames sees: nothing for
        the first chunk of a pair, a key chunk; for the second, the last frames of the decoder's own one-step
        decode of the first (no gradient). Closed loop, as the codec decodes: not the source's frames."""
        cfg = self.model.cfg
        pairs = latents.keep.shape[0] // 2
        device = latents.keep.device
        noise = torch.randn((pairs, 3, cfg.frames, cfg.tile, cfg.tile), generator=gen, device=device, dtype=dtype)
        with torch.no_grad():
            first = self.model.decoder(noise, torch.ones(pairs, device=device), latents.select(slice(0, pairs)))
        last = first[:, :, -cfg.previous_frames:].clamp(-1, 1).to(dtype)
        has_previous = torch.arange(2 * pairs, device=device) >= pairs
        return dataclasses.replace(latents, previous=torch.cat([torch.zeros_like(last), last]),
                                   has_previous=has_previous)

    @staticmethod
    def _error_before(latents: Latents, x0: Tensor) -> Tensor | None:
        """The error of the last frame a decoder of previous frames saw before each chunk (B, 3, H, W): for
        the second chunk of a pair, the first chunk's decoded last frame against its source (the first
        chunks saw none: zero). None where the model sees no previous frames."""
        if latents.has_previous is None:
            return None
        pairs = x0.shape[0] // 2
        error = latents.previous[pairs:, :, -1].float() - x0[:pairs, :, -1].float()
        return torch.cat([torch.zeros_like(error), error])

    def _conditioning(self, posterior, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """The latents the decoder sees: posterior samples or noisy means (see `latents`), or, in
        decoder-ft, a per-sample mix of quantized means, LDM predictions of the means, and the means."""
        cfg = self.cfg
        if cfg.stage_spec.conditioning == "posterior":
            if cfg.latents == "kl":
                return posterior.sample(gen)
            def noisy(mean: Tensor) -> Tensor:
                noise = torch.rand(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype) - 0.5
                return mean + cfg.quant_step * noise
            return noisy(posterior.structural_mean), noisy(posterior.tokens_1d_mean)
        s = posterior.structural_mean.shape[1]
        z = posterior.means().detach()
        stats = self.latent_stats
        quantizer = (stats.quantizer(cfg.quant_step) if cfg.latents == "kl"
                     else Quantizer.in_latent_units(cfg.quant_step, z.shape[-1]))
        choices = [quantizer.dequantize(quantizer.quantize(z))]
        if self.frozen.ldm is not None:
            zn = stats.normalise(z)
            t = torch.rand(z.shape[0], generator=gen, device=z.device) * cfg.ldm_t_max
            noise = torch.randn(zn.shape, generator=gen, device=z.device, dtype=zn.dtype)
            z_t = mix(zn, noise, t)
            with torch.no_grad():
                choices.append(stats.restore(self.frozen.ldm.predict_clean(z_t, t).float()))
        else:
            choices.append(z)
        u = torch.rand(z.shape[0], generator=gen, device=z.device).view(-1, 1, 1)
        mixed = torch.where(u < cfg.quantized_share, choices[0],
                            torch.where(u < cfg.quantized_share + cfg.ldm_share, choices[1], z))
        return mixed[:, :s], mixed[:, s:]

    def _ldm_loss(self, x0: Tensor, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        mcfg = self.model.cfg
        b, device = x0.shape[0], x0.device
        with torch.no_grad():
            z0 = self.latent_stats.normalise(self.model.encode(x0, full_tile_geometry(mcfg, b, device)).means().float())
        t = torch.sigmoid(torch.randn(b, generator=gen, device=device))
        eps = torch.randn(z0.shape, generator=gen, device=device)
        parts = {"ldm": (self.ldm(mix(z0, eps, t), t).float() - velocity_target(z0, eps)).pow(2).mean()}
        return parts["ldm"], parts
