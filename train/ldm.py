"""The latent DiT (LDM): flow matching over One-DVA's latents.

It learns to denoise the normalised full latent of a chunk (structural tokens,
then 1D tokens). Decoder fine-tuning conditions the decoder on its predicted
clean latents z0^ = z_t - t v^, so that the decoder learns to cope with latents
that are close to, but not exactly, what the encoder produced.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from onedva_codec.model.network import DiTBlock, FinalLayer, ScalarEmbedder, zero_init_adaln


class LatentDiT(nn.Module):
    def __init__(self, tokens: int, channels: int, width: int, depth: int, heads: int):
        super().__init__()
        self.tokens, self.channels = tokens, channels
        self.embed = nn.Linear(channels, width)
        self.pos = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.t_embed = ScalarEmbedder(width)
        self.blocks = nn.ModuleList(DiTBlock(width, heads, 4.0) for _ in range(depth))
        self.final = FinalLayer(width, channels)
        zero_init_adaln(self.blocks, self.final)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        """(B, tokens, C) noisy latents, (B,) times -> velocity eps - z0."""
        c = self.t_embed(t)
        x = self.embed(z_t) + self.pos
        for block in self.blocks:
            x = block(x, c)
        return self.final(x, c)

    def predict_clean(self, z_t: Tensor, t: Tensor) -> Tensor:
        return z_t - t.view(-1, 1, 1) * self(z_t, t)
