"""The training losses, each a small function of tensors.

Flow matching: the decoder predicts the clean chunk x0^; with x_t = (1 - t) x0 + t eps
its velocity is v^ = (x_t - x0^) / t and the target is v = (x_t - x0) / t = eps - x0.
Both divide by max(t, 0.05), as the sampler does, so the loss is
|x0^ - x0|^2 / max(t, 0.05)^2: the v-loss wherever t >= 0.05.

Perceptual: LPIPS between predicted and real frames, on a few frames per clip.
KL: to N(0, I), averaged over latent values.
REPA: cosine similarity between a decoder block's tokens (through a small MLP) and a
frozen teacher's features of the clean frames at the same place and time.
Alignment: each 1D latent is pulled towards its best-matching structural latent
and its most similar other 1D latent (top-1 cosine each).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onedva_codec.bitstream.prior import slot_bands
from onedva_codec.evaluation.lpips import LPIPS, VGG16Features, load_network_state, normalise_input
from onedva_codec.model.network import MIN_T


def _capped_time_weight(t: Tensor, weight_cap: float) -> Tensor:
    """1 / t^2 (t at least MIN_T, as in sampling), at most `weight_cap`, shaped to weigh (B, 3, T, H, W)."""
    return t.clamp(min=MIN_T).pow(-2).clamp(max=weight_cap).view(-1, 1, 1, 1, 1)


def flow_matching_loss(x0_hat: Tensor, x0: Tensor, t: Tensor, weight_cap: float = 400.0, per_sample: bool = False
                       ) -> Tensor:
    """|x0^ - x0|^2 / t^2 (the v-loss), its weight capped: near t = 0 the input already holds the answer
    and the latents hardly matter, so an uncapped weight spends the model on what decoding never needs.
    The mean over everything, or with `per_sample` over each sample's values, (B,)."""
    weight = _capped_time_weight(t, weight_cap)
    loss = (x0_hat.float() - x0.float()).pow(2) * weight
    return loss.flatten(1).mean(1) if per_sample else loss.mean()


def temporal_loss(x0_hat: Tensor, x0: Tensor, t: Tensor, weight_cap: float, error_before: Tensor | None = None,
                  seen_before: Tensor | None = None, per_sample: bool = False) -> Tensor:
    """|(x0^ - x0)[f] - (x0^ - x0)[f - 1]|^2 over a chunk's consecutive frames, weighted as flow_matching_loss:
    how far the decode's change from one frame to the next is from the source's. `error_before` (B, 3, H, W),
    the error of the frame before the chunk as the decoder saw it, adds the change into the chunk's first
    frame for the samples `seen_before` (B,) marks. The mean over everything, or per sample (B,)."""
    weight = _capped_time_weight(t, weight_cap)
    error = x0_hat.float() - x0.float()
    if error_before is not None:
        seen = seen_before.view(-1, 1, 1, 1, 1)  # elsewhere the chunk's own first frame: no change
        error = torch.cat([torch.where(seen, error_before[:, :, None].float(), error[:, :, :1]), error], dim=2)
    change = (error[:, :, 1:] - error[:, :, :-1]).pow(2) * weight
    return change.flatten(1).mean(1) if per_sample else change.mean()


class LatentRate(nn.Module):
    """Bits of quantized latents under a learned factorized density, for the rate term of training.

    Latent values are modelled per channel, separately for the structural latent and for each band
    of 1D slots (the bands of the codec's prior), as a mixture of logistics; a value with uniform
    quantization noise costs -log2 of the density's mass on the step-wide bin around it. What
    ships is the prior fitted at export to the model's actual symbols; this density only teaches
    the encoder what a value costs.
    """

    def __init__(self, structural_tokens: int, max_1d_tokens: int, channels: int, step: float, components: int = 3):
        super().__init__()
        bands = torch.as_tensor(slot_bands(max_1d_tokens), dtype=torch.long)
        self.register_buffer("group", torch.cat([torch.zeros(structural_tokens, dtype=torch.long), 1 + bands]),
                             persistent=False)
        groups = int(self.group.max()) + 1
        self.step = step
        spread = torch.linspace(-1.0, 1.0, components) * 2 * step
        self.loc = nn.Parameter(spread.expand(groups, channels, components).clone())
        self.log_scale = nn.Parameter(torch.full((groups, channels, components), math.log(2 * step)))
        self.logit = nn.Parameter(torch.zeros(groups, channels, components))

    def forward(self, values: Tensor, kept: Tensor) -> Tensor:
        """(B, S + N, C) noisy latents, (B, S + N) bool kept -> (B,) bits of the kept values."""
        v = values.float()[..., None]
        loc, scale = self.loc[self.group], self.log_scale[self.group].exp()
        upper = torch.sigmoid((v + self.step / 2 - loc) / scale)
        lower = torch.sigmoid((v - self.step / 2 - loc) / scale)
        mass = ((upper - lower) * torch.softmax(self.logit[self.group], dim=-1)).sum(-1)
        bits = -torch.log2(mass.clamp(min=1e-9))
        return (bits.sum(-1) * kept.float()).sum(-1)


def frame_subset(video: Tensor, frames: Tensor) -> Tensor:
    """(B, 3, T, H, W), (B, k) frame indices -> (B * k, 3, H, W)."""
    picked = torch.stack([clip[:, idx] for clip, idx in zip(video, frames)])  # (B, 3, k, H, W)
    return picked.transpose(1, 2).flatten(0, 1)


def perceptual_loss(lpips: LPIPS, x0_hat: Tensor, x0: Tensor, frames: Tensor, weight: Tensor | None = None) -> Tensor:
    """LPIPS over the chosen frames; with `weight` (B,) of 0s and 1s, the mean over the clips weighted 1
    (0 when there are none), without a data-dependent shape that would stall the GPU."""
    distances = lpips(frame_subset(x0_hat, frames).float(), frame_subset(x0, frames).float())
    if weight is None:
        return distances.mean()
    per_clip = distances.reshape(x0.shape[0], -1).mean(1)
    return (per_clip * weight).sum() / weight.sum().clamp(min=1)


class RepaTeacher(nn.Module):
    """VGG16 relu5_3 (ImageNet), pooled to the patch grid: one 512-d vector per 16 x 16 patch."""

    def __init__(self, grid: int):
        super().__init__()
        self.grid = grid
        self.net = VGG16Features()
        state = load_network_state("vgg16")
        self.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        self.requires_grad_(False).eval()
        self.channels = 512

    @torch.no_grad()
    def forward(self, frames: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, grid * grid, 512)."""
        features = self.net(normalise_input(frames))[-1]
        if features.shape[-1] != self.grid:
            features = F.interpolate(features.float(), size=(self.grid, self.grid), mode="bilinear",
                                     antialias=True, align_corners=False)
        return features.flatten(2).transpose(1, 2)


class RepaProjector(nn.Module):
    """Decoder width -> teacher width, as REPA's three-layer MLP."""

    def __init__(self, width: int, teacher: int, hidden: int = 1024):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, teacher))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.mlp(tokens)


def repa_loss(projector: RepaProjector, teacher: RepaTeacher, tokens: Tensor, x0: Tensor, groups: Tensor,
              temporal_patch: int) -> Tensor:
    """Negative cosine similarity of projected decoder tokens and teacher features.

    tokens: (B, G * grid^2, width) noisy-patch tokens of a decoder block; groups: (B, k)
    temporal groups to align. Group g covers frames (g - 1) * tp + 1 .. g * tp; the teacher
    sees its last frame, g * tp (group 0 is frame 0).
    """
    b, n, width = tokens.shape
    per_group = teacher.grid * teacher.grid
    tokens = tokens.reshape(b, n // per_group, per_group, width)
    picked = torch.stack([t[g] for t, g in zip(tokens, groups)]).flatten(0, 1)  # (B * k, grid^2, width)
    target = teacher(frame_subset(x0, groups * temporal_patch))
    similarity = F.cosine_similarity(projector(picked).float(), target.float(), dim=-1)
    return -similarity.mean()


def alignment_loss(structural: Tensor, tokens_1d: Tensor) -> Tensor:
    """(B, S, C), (B, N, C) latents -> mean of (1 - top-1 cosine) to structural and to other 1D latents."""
    a = F.normalize(tokens_1d.float(), dim=-1)
    s = F.normalize(structural.float(), dim=-1)
    to_structural = (a @ s.transpose(1, 2)).amax(dim=-1)
    among = a @ a.transpose(1, 2)
    among = among - 3.0 * torch.eye(among.shape[-1], device=among.device)  # exclude itself
    to_neighbour = among.amax(dim=-1)
    return (1 - to_structural).mean() + (1 - to_neighbour).mean()
