"""One-DVA: a ViT encoder and a pixel-space DiT decoder (docs/model.md, "The model").

Video tensors are (B, 3, T, H, W) in [-1, 1] with T = config.frames and
H = W = config.tile. Latents are (B, tokens, C).

Encoder: spatiotemporal patches plus five geometry tokens (height, width, length,
size, aspect ratio of the real content), and for `tokens_1d` "queries" or "homes"
N learnable queries, go through plain pre-norm transformer blocks. The patch
features averaged over time give the structural latent (one token per spatial
position). The 1D latents, kept from the head at variable length, are one of
(config.py):
  * "queries" (config `s`): the queries' outputs, seen by the decoder in its sequence;
  * "homes" (config `m`): the same, each with a home (temporal group, position)
    where the decoder also adds it;
  * "residual" (config `m-residual`, the shipped v2): no queries; the token of
    home (g, p) is the encoder's feature of group g at p minus the structural
    feature at p, added at its home in the decoder.
Slots run coarse to fine (`token_homes`). Both latents are posteriors (mean,
log-variance); the codec transmits the means.

Decoder: a DiT over [noisy patches | structural tokens | 1D tokens unless
`tokens_1d_in_sequence` is off], conditioned on the flow-matching time t through
adaLN-Zero. The structural latent is also added to the noisy patch tokens at its
spatial position in every temporal group, which ties the decoder to the layout
from the first step. A dropped 1D slot holds a learned padding token (in the
sequence) or adds a learned "absent" vector (at a home), so the decoder can tell
"absent" from any value. The noisy positions are unpatchified with a long skip
from their input embedding, a linear layer, a pixel shuffle and a 3x3 conv.

The decoder network outputs a clean-video estimate x0; `OneDVA.velocity` turns it
into the flow-matching velocity v = (x_t - x0) / t. Predicting x0 rather than v
keeps the network's output on the image manifold, which matters here because a
patch (2 x 16 x 16 x 3 = 1536 values) is wider than the transformer; the loss is
still taken on v.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .hyperprior import ChunkContext, HyperPrior

try:  # optional GPU extra
    from flash_attn import flash_attn_func as _flash_attn_func
except ImportError:
    _flash_attn_func = None

GEOMETRY_TOKENS = 5  # height, width, length, size, aspect ratio
MIN_T = 0.05  # v = (x_t - x0) / t is clamped here so that t -> 0 stays finite


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Full bidirectional attention over (B, heads, L, head_dim) tensors."""
    if _flash_attn_func is not None and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


# ----------------------------------------------------------------------------
# Embeddings


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """(N,) float positions -> (N, dim) fixed sine-cosine features."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=positions.device) / half)
    angles = positions.double()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_grid(shape: tuple[int, ...], dim: int) -> Tensor:
    """Fixed sine-cosine position features for a 2D or 3D grid, flattened row-major.

    The first axis of a 3D grid (time) gets a quarter of the channels, the spatial
    axes share the rest; channels that do not divide evenly stay zero.
    """
    if len(shape) == 2:
        dims = [2 * (dim // 4)] * 2
    else:
        dt = 2 * (dim // 8)
        dims = [dt] + [2 * ((dim - dt) // 4)] * 2
    coords = torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")
    parts = [sincos_1d(c.flatten(), d) for c, d in zip(coords, dims)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


class ScalarEmbedder(nn.Module):
    """Scalar -> sinusoidal features -> MLP, as DiT embeds its timestep."""

    def __init__(self, dim: int, freq_dim: int = 256, scale: float = 1000.0):
        super().__init__()
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, values: Tensor) -> Tensor:
        shape = values.shape
        feats = sincos_1d(values.flatten().float() * self.scale, self.freq_dim)
        return self.mlp(feats).reshape(*shape, -1)


# ----------------------------------------------------------------------------
# Patches


def patchify(video: Tensor, tp: int, p: int) -> Tensor:
    """(B, C, T, H, W) -> (B, T/tp * H/p * W/p, tp * p * p * C)."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // tp, tp, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # B, t, h, w, tp, p, p, C
    return x.reshape(b, (t // tp) * (h // p) * (w // p), tp * p * p * c)


def unpatchify(tokens: Tensor, tp: int, p: int, t: int, h: int, w: int) -> Tensor:
    """Inverse of `patchify`: (B, L, tp * p * p * C) -> (B, C, T, H, W)."""
    b = tokens.shape[0]
    c = tokens.shape[-1] // (tp * p * p)
    x = tokens.reshape(b, t // tp, h // p, w // p, tp, p, p, c)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # B, C, t, tp, h, p, w, p
    return x.reshape(b, c, t, h, w)


def _bit_reverse(values: Tensor, bits: int) -> Tensor:
    out = torch.zeros_like(values)
    for bit in range(bits):
        out |= ((values >> bit) & 1) << (bits - 1 - bit)
    return out


def token_homes(cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """The home of each 1D slot, in slot order: (N,) temporal group (0 .. G-1, of the frames after
    the first) and (N,) spatial position (row-major on the patch grid).

    Slots run coarse to fine, so that every kept head covers the whole chunk as evenly as it
    can: home (g, p) gets the slot whose bits are the reverse of g's bits followed by the bits of
    p's Z-order (Morton) index. The first slots then fall far apart in space and time and later
    ones fill the gaps between them.
    """
    groups, side = (cfg.frames - 1) // cfg.enc_temporal_patch, cfg.grid
    g_bits, s_bits = groups.bit_length() - 1, side.bit_length() - 1
    group, row, col = torch.meshgrid(torch.arange(groups), torch.arange(side), torch.arange(side), indexing="ij")
    morton = torch.zeros_like(row)
    for bit in range(s_bits):
        morton |= ((row >> bit) & 1) << (2 * bit + 1) | ((col >> bit) & 1) << (2 * bit)
    slot = _bit_reverse((group << (2 * s_bits)) | morton, g_bits + 2 * s_bits).flatten()
    order = torch.argsort(slot)
    return group.flatten()[order], (row * side + col).flatten()[order]


def replicate_first_frame(video: Tensor, extra: int) -> Tensor:
    """Prepend `extra` copies of frame 0 so that 1 + 16 frames split into whole temporal patches."""
    if extra == 0:
        return video
    return torch.cat([video[:, :, :1].expand(-1, -1, extra, -1, -1), video], dim=2)


# ----------------------------------------------------------------------------
# Transformer blocks


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        # Normalising queries and keys keeps attention logits bounded under bf16.
        self.q_norm = nn.RMSNorm(dim // heads)
        self.k_norm = nn.RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # Weights cast to the activations' dtype, so that bf16 autocast runs the fused norm kernel.
        q = F.rms_norm(q, q.shape[-1:], self.q_norm.weight.to(q.dtype), self.q_norm.eps)
        k = F.rms_norm(k, k.shape[-1:], self.k_norm.weight.to(k.dtype), self.k_norm.eps)
        out = attention(q.to(v.dtype), k.to(v.dtype), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning: starts as the identity."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ----------------------------------------------------------------------------
# Encoder and decoder


@dataclass
class Posterior:
    """Diagonal Gaussian over the latents; the codec transmits the mean."""

    structural_mean: Tensor  # (B, S, C)
    structural_logvar: Tensor | None  # None for a v3 model, whose latents are points
    tokens_1d_mean: Tensor  # (B, N, C)
    tokens_1d_logvar: Tensor | None

    def sample(self, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        def draw(mean: Tensor, logvar: Tensor) -> Tensor:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return mean + torch.exp(0.5 * logvar) * noise

        return (draw(self.structural_mean, self.structural_logvar),
                draw(self.tokens_1d_mean, self.tokens_1d_logvar))

    def select(self, index: slice | Tensor) -> "Posterior":
        """The posterior of some of the batch's samples."""
        def part(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index]
        return Posterior(part(self.structural_mean), part(self.structural_logvar), part(self.tokens_1d_mean),
                         part(self.tokens_1d_logvar))

    def means(self) -> Tensor:
        """The full latent the codec transmits: structural then 1D means, (B, S + N, C)."""
        return torch.cat([self.structural_mean, self.tokens_1d_mean], dim=1)

    def kl(self) -> Tensor:
        """KL to N(0, I), averaged over every latent value."""
        def kl_part(mean: Tensor, logvar: Tensor) -> Tensor:
            return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)

        parts = [kl_part(self.structural_mean, self.structural_logvar),
                 kl_part(self.tokens_1d_mean, self.tokens_1d_logvar)]
        return torch.cat([p.flatten(1) for p in parts], dim=1).mean()


@dataclass
class Latents:
    """What the decoder is conditioned on."""

    structural: Tensor  # (B, S, C)
    tokens_1d: Tensor  # (B, N, C); entries where `keep` is False are ignored
    keep: Tensor  # (B, N) bool, a prefix of True per row
    # A model with previous frames: the last frames decoded of the same tile in the chunk before, (B, 3,
    # previous_frames, tile, tile) in [-1, 1], and which rows have them (B,) bool (a key chunk has none: its
    # row of `previous` is ignored). None: no row has any.
    previous: Tensor | None = None
    has_previous: Tensor | None = None

    def select(self, index: Tensor | slice) -> "Latents":
        """The latents of some of the batch's rows."""
        def part(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index]
        return Latents(self.structural[index], self.tokens_1d[index], self.keep[index], part(self.previous),
                       part(self.has_previous))

    @staticmethod
    def keep_mask(lengths: Tensor, n_max: int) -> Tensor:
        """(B,) kept lengths -> (B, n_max) prefix mask."""
        return torch.arange(n_max, device=lengths.device)[None] < lengths[:, None]


def geometry_features(height: Tensor, width: Tensor, length: Tensor, cfg: ModelConfig) -> Tensor:
    """Normalised (B, 5) description of the real content inside a padded tile and chunk."""
    h, w, n = height.float(), width.float(), length.float()
    return torch.stack([h / cfg.tile, w / cfg.tile, n / cfg.frames,
                        h * w / cfg.tile**2, torch.log(w / h)], dim=1)


def full_tile_geometry(cfg: ModelConfig, batch: int, device: torch.device | str) -> Tensor:
    """Geometry features of chunks that fill the tile and all frames (training clips)."""
    full = torch.full((batch,), cfg.tile, device=device)
    return geometry_features(full, full, torch.full_like(full, cfg.frames), cfg)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, tp, p = cfg.enc_width, cfg.enc_temporal_patch, cfg.patch
        groups = (cfg.frames - 1) // tp + 1
        self.patch_embed = nn.Linear(3 * tp * p * p, d)
        self.register_buffer("patch_pos", sincos_grid((groups, cfg.grid, cfg.grid), d), persistent=False)
        if cfg.tokens_1d != "queries":
            home_group, home_pos = token_homes(cfg)
            # Encoder patch index of each slot's home; group 0 is the first frame's.
            self.register_buffer("home_index", (home_group + 1) * cfg.structural_tokens + home_pos,
                                 persistent=False)
        if cfg.tokens_1d != "residual":
            # One learned vector per query; it is at once the query and its position (plus, with homes,
            # the fixed position of its home).
            self.queries = nn.Parameter(torch.randn(cfg.max_1d_tokens, d) * 0.02)
        self.geometry_embed = ScalarEmbedder(d, scale=100.0)
        self.geometry_kind = nn.Parameter(torch.randn(GEOMETRY_TOKENS, d) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.enc_heads, cfg.mlp_ratio) for _ in range(cfg.enc_depth))
        self.norm = nn.LayerNorm(d)
        # a v1/v2 posterior has a mean and a log-variance per channel, a v3 latent a value
        outputs = cfg.latent_channels * (1 if cfg.rate_distortion else 2)
        self.to_structural = nn.Linear(d, outputs)
        self.to_1d = nn.Linear(d, outputs)

    def forward(self, video: Tensor, geometry: Tensor) -> Posterior:
        cfg = self.cfg
        b = video.shape[0]
        x = replicate_first_frame(video, cfg.enc_temporal_patch - 1)
        patches = self.patch_embed(patchify(x, cfg.enc_temporal_patch, cfg.patch)) + self.patch_pos
        geo = self.geometry_embed(geometry) + self.geometry_kind
        parts = [geo, patches]
        if cfg.tokens_1d != "residual":
            queries = self.queries + (self.patch_pos[self.home_index] if cfg.tokens_1d == "homes" else 0)
            parts.append(queries.expand(b, -1, -1))
        tokens = torch.cat(parts, dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)

        n_patches = patches.shape[1]
        patch_feats = tokens[:, GEOMETRY_TOKENS:GEOMETRY_TOKENS + n_patches]
        structural = patch_feats.reshape(b, -1, cfg.structural_tokens, patch_feats.shape[-1]).mean(dim=1)
        if cfg.tokens_1d == "residual":  # what the temporal mean lacks at each slot's home
            residual = patch_feats - structural.repeat(1, n_patches // cfg.structural_tokens, 1)
            tokens_1d = residual[:, self.home_index]
        else:
            tokens_1d = tokens[:, GEOMETRY_TOKENS + n_patches:]
        if cfg.rate_distortion:
            return Posterior(self.to_structural(structural), None, self.to_1d(tokens_1d), None)
        s_mean, s_logvar = self.to_structural(structural).chunk(2, dim=-1)
        q_mean, q_logvar = self.to_1d(tokens_1d).chunk(2, dim=-1)
        return Posterior(s_mean, s_logvar.clamp(-30, 20), q_mean, q_logvar.clamp(-30, 20))


class Decoder(nn.Module):
    """Predicts the clean chunk from a noisy one and the latents."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, tp, p, c = cfg.dec_width, cfg.dec_temporal_patch, cfg.patch, cfg.latent_channels
        self.groups = (cfg.frames - 1) // tp + 1
        self.patch_embed = nn.Linear(3 * tp * p * p, d)
        self.register_buffer("patch_pos", sincos_grid((self.groups, cfg.grid, cfg.grid), d), persistent=False)
        self.structural_embed = nn.Linear(c, d)
        self.structural_to_patches = nn.Linear(c, d)
        self.register_buffer("structural_pos", sincos_grid((cfg.grid, cfg.grid), d), persistent=False)
        if cfg.tokens_1d_in_sequence:
            self.tokens_1d_embed = nn.Linear(c, d)
            self.tokens_1d_pos = nn.Parameter(torch.randn(cfg.max_1d_tokens, d) * 0.02)
            self.pad_token = nn.Parameter(torch.randn(d) * 0.02)
        if cfg.tokens_1d != "queries":
            home_group, home_pos = token_homes(cfg)
            # Where each home sits among (encoder group, position), to lay the slots out on the grid.
            self.register_buffer("home_slot", torch.argsort(home_group * cfg.structural_tokens + home_pos),
                                 persistent=False)
            self.tokens_1d_to_patches = nn.Linear(c, d)
            self.absent_at_home = nn.Parameter(torch.randn(d) * 0.02)
        if cfg.previous_frames:
            # the frames before the chunk, patch by patch, added to every group's patches; and the last of
            # them, pixel by pixel, to every frame drawn: what did not change can pass through untouched
            self.previous_embed = nn.Linear(3 * cfg.previous_frames * p * p, d)
            self.previous_to_pixels = nn.Conv2d(3, 3, kernel_size=3, padding=1)
        self.t_embed = ScalarEmbedder(d)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth))
        self.final = FinalLayer(d, tp * p * p * cfg.head_channels)
        self.out_conv = nn.Conv2d(cfg.head_channels, 3, kernel_size=3, padding=1)
        if cfg.pixel_filter:
            self.pixel_filter = nn.Sequential(nn.Conv3d(cfg.head_channels, cfg.pixel_filter, 3, padding=1), nn.SiLU(),
                                              nn.Conv3d(cfg.pixel_filter, 3, 3, padding=1))

    def forward(self, x_t: Tensor, t: Tensor, latents: Latents, tap_block: int | None = None
                ) -> Tensor | tuple[Tensor, Tensor]:
        """Clean-chunk estimate; with `tap_block`, also the noisy-patch tokens after that block
        (B, groups * grid^2, width), which training aligns with a teacher's features (REPA)."""
        cfg = self.cfg
        tp, p = cfg.dec_temporal_patch, cfg.patch
        b, _, frames, h, w = x_t.shape
        x = replicate_first_frame(x_t, tp - 1)

        patches = self.patch_embed(patchify(x, tp, p)) + self.patch_pos
        # Structural latent at its spatial position in every temporal group.
        patches = patches.reshape(b, self.groups, cfg.structural_tokens, -1)
        patches = patches + self.structural_to_patches(latents.structural)[:, None]
        if cfg.tokens_1d != "queries":  # each 1D token at its home: the decoder groups of its encoder group
            at_home = self.tokens_1d_to_patches(latents.tokens_1d)
            at_home = torch.where(latents.keep[..., None], at_home, self.absent_at_home.to(at_home.dtype))
            at_home = at_home[:, self.home_slot].reshape(b, -1, cfg.structural_tokens, at_home.shape[-1])
            at_home = at_home.repeat_interleave(cfg.enc_temporal_patch // tp, dim=1)
            patches = torch.cat([patches[:, :1], patches[:, 1:] + at_home], dim=1)
        if latents.has_previous is not None:
            before = self.previous_embed(patchify(latents.previous.to(patches.dtype), cfg.previous_frames, p))
            patches = patches + torch.where(latents.has_previous[:, None, None, None], before[:, None], 0)
        patches = patches.flatten(1, 2)
        sequence = [patches, self.structural_embed(latents.structural) + self.structural_pos]
        if cfg.tokens_1d_in_sequence:
            tokens_1d = self.tokens_1d_embed(latents.tokens_1d)
            tokens_1d = torch.where(latents.keep[..., None], tokens_1d, self.pad_token.to(tokens_1d.dtype))
            sequence.append(tokens_1d + self.tokens_1d_pos)

        c = self.t_embed(t)
        tokens = torch.cat(sequence, dim=1)
        tapped = None
        for index, block in enumerate(self.blocks):
            tokens = block(tokens, c)
            if index == tap_block:
                tapped = tokens[:, : patches.shape[1]]

        out = self.final(tokens[:, : patches.shape[1]] + patches, c)  # long skip
        feats = unpatchify(out, tp, p, x.shape[2], h, w)  # pixel shuffle: (B, hc, T', H, W)
        frames_out = self.out_conv(feats.transpose(1, 2).reshape(-1, cfg.head_channels, h, w))
        frames_out = frames_out.reshape(b, -1, 3, h, w).transpose(1, 2)[:, :, tp - 1:]
        if cfg.pixel_filter:
            frames_out = frames_out + self.pixel_filter(feats[:, :, tp - 1:])
        if latents.has_previous is not None:
            last = self.previous_to_pixels(latents.previous[:, :, -1].to(frames_out.dtype))
            frames_out = frames_out + torch.where(latents.has_previous[:, None, None, None], last, 0)[:, :, None]
        return frames_out if tap_block is None else (frames_out, tapped)


class OneDVA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.apply(_init_weights)
        zero_init_adaln(self.decoder.blocks, self.decoder.final)
        if cfg.previous_frames:  # starts unseen: grown from a model without it, the decoder starts as that model
            for layer in (self.decoder.previous_embed, self.decoder.previous_to_pixels):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        if cfg.pixel_filter:  # starts silent, as the layers above
            nn.init.zeros_(self.decoder.pixel_filter[-1].weight)
            nn.init.zeros_(self.decoder.pixel_filter[-1].bias)
        # made after the initialisation above, which would overwrite its zero-initialised last layer
        self.hyperprior = HyperPrior(cfg) if cfg.rate_distortion else None

    def encode(self, video: Tensor, geometry: Tensor) -> Posterior:
        return self.encoder(video, geometry)

    def code_latents(self, posterior: Posterior, keep: Tensor, rate: Tensor, mode: str = "round",
                     previous: ChunkContext | None = None) -> tuple[Latents, Tensor, ChunkContext]:
        """A v3 model's latents as the decoder receives them at each sample's rate point (B,), the bits
        they cost (B,) and what the next chunk's temporal prior sees; `mode` and `previous` (None for key
        chunks) as `HyperPrior.forward`."""
        structural, tokens_1d, bits, context = self.hyperprior(posterior.structural_mean, posterior.tokens_1d_mean,
                                                               keep, rate, self.decoder.home_slot, mode, previous)
        return Latents(structural, tokens_1d, keep), bits, context

    def code_chunk_pairs(self, posterior: Posterior, keep: Tensor, rate: Tensor, mode: str = "round"
                         ) -> tuple[Latents, Tensor]:
        """A batch of 2 P chunks that are P pairs, each pair's first chunk in the first half: the first
        coded as key chunks, the second knowing the first's restored planes (a temporal prior's training
        and validation). -> latents and bits (2 P,), in the batch's order."""
        p = keep.shape[0] // 2
        first, bits_first, context = self.code_latents(posterior.select(slice(0, p)), keep[:p], rate[:p], mode)
        second, bits_second, _ = self.code_latents(posterior.select(slice(p, 2 * p)), keep[p:], rate[p:], mode,
                                                   context)
        return (Latents(torch.cat([first.structural, second.structural]),
                        torch.cat([first.tokens_1d, second.tokens_1d]), keep), torch.cat([bits_first, bits_second]))

    def predict_clean(self, x_t: Tensor, t: Tensor, latents: Latents) -> Tensor:
        return self.decoder(x_t, t, latents)

    def velocity(self, x_t: Tensor, t: Tensor, latents: Latents) -> Tensor:
        """Flow-matching velocity v = eps - x0 for x_t = (1 - t) x0 + t eps."""
        x0 = self.predict_clean(x_t, t, latents)
        return (x_t - x0) / t.clamp(min=MIN_T).view(-1, 1, 1, 1, 1).to(x0.dtype)


def zero_init_adaln(blocks: nn.ModuleList, final: FinalLayer) -> None:
    """adaLN-Zero: every block's modulation and the final layer start at zero, so a DiT starts as the
    identity followed by a zero output, and each block grows into its role."""
    for layer in [*(block.modulation[-1] for block in blocks), final.modulation[-1], final.linear]:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

