"""Encoder-side search: latents that the decoder turns into a better picture.

The encoder network predicts each tile's latent in one pass and never sees what the decoder makes
of it once rounded. `search_latents` refines that prediction by gradient steps through the
one-step decoder, against the tile's own pixels (with a small price on the symbols' size), from
the noise the decoder will start from (the file's seed fixes it), rounding with a
straight-through gradient so that every step sees the symbols the file would hold. The format
does not change: any odva decodes such a file, and decoding costs the same; encoding costs about
three decoder passes per tile per step.

Rate control chooses how many 1D tokens each tile keeps only once the whole video is analysed, so
each step keeps a prefix of random length, as training does, and the latent serves whatever length
is chosen. Each tile's lengths come from its own place in the file (seed, chunk, tile), its loss is
its own mean, and Adam works value by value: a tile's search does not depend on which tiles share
its batch, so the file does not depend on --batch or on the devices (docs/format.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..bitstream.noise import unit_generator
from ..bitstream.prior import SYMBOL_LIMIT
from ..model.folder import LoadedModel
from ..model.network import Latents
from ..runtime.engine import Engine

SEARCH_LR = 0.05  # Adam's step, in quantizer steps: eight steps move about a quarter of the symbols
# A price on the symbols' size (mean |symbol|) beside each tile's mean squared error in [-1, 1] (about
# 0.02 at 23 dB): without it the search buys its picture with up to 20% more bits; with it the file
# keeps its size and the picture its gain (docs/model.md, "Encoder-side search")
SEARCH_RATE_WEIGHT = 0.002


def search_lengths(seed: int, chunk: int, tile: int, steps: int, max_tokens: int) -> Tensor:
    """The 1D lengths a unit's search keeps at each of its steps, (steps,), fixed by its place."""
    return torch.randint(0, max_tokens + 1, (steps,), generator=unit_generator("search", seed, chunk, tile))


def search_latents(model: LoadedModel, engine: Engine, tiles: Tensor, means: Tensor, noise: Tensor, real: Tensor,
                   content: tuple[int, int], lengths: Tensor, lr: float = SEARCH_LR) -> Tensor:
    """Latents (B, S + N, C), in the encoder's units, that decode nearer to `tiles` than `means` do.

    tiles: (B, 3, T, tile, tile) in [-1, 1]; means: the encoder's (B, S + N, C); noise: each tile's
    starting noise, as the decoder draws it; real: (B,) real frames of each tile's chunk; content:
    the height and width of real pixels in every tile (only real frames and pixels count); lengths:
    (B, steps) 1D tokens kept at each step (`search_lengths`), one step per column.
    """
    network, cfg, quantizer = model.model, model.cfg, model.quantizer()
    s, n_max = cfg.structural_tokens, cfg.max_1d_tokens
    mean, scale = quantizer.affine(means)
    target = tiles[..., : content[0], : content[1]].float()
    frames = (torch.arange(cfg.frames, device=tiles.device)[None] < real[:, None]).float()
    # each tile's mean squared error over its real pixels: its gradient is its own
    weight = (frames / (frames.sum(dim=1, keepdim=True) * 3 * content[0] * content[1]))[:, None, :, None, None]
    lengths = lengths.to(tiles.device)
    ones = torch.ones(len(tiles), device=tiles.device)
    z = ((means.float() - mean) / scale).detach().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for step in range(lengths.shape[1]):
        rounded = z + (torch.round(z).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT) - z).detach()  # straight through
        values = rounded * scale + mean
        latents = Latents(values[:, :s], values[:, s:], Latents.keep_mask(lengths[:, step], n_max))
        with engine.autocast(tiles.device):
            decoded = network.predict_clean(noise, ones, latents)  # one step from t = 1
        error = (decoded.float()[..., : content[0], : content[1]] - target).pow(2)
        loss = (error * weight).sum() + SEARCH_RATE_WEIGHT * z.abs().mean(dim=(1, 2)).sum()
        z.grad, = torch.autograd.grad(loss, z)  # the network's weights need none
        optimizer.step()
    return z.detach() * scale + mean  # in float32, which the quantizer rounds as the search did

