"""Grow a trained model into a larger config, so that a new design starts from what an old one learned.

The case this exists for is v2 -> v3 (model.md, "v3"): the same transformers with a latent four times
as wide and a hyperprior. Every weight whose shape is unchanged is copied. A latent head of the encoder
keeps the old latent's channels first (from a v1/v2 posterior head, its mean half) and gives the new
channels their fresh initialisation; the decoder's layers that read the latent copy the old channels'
columns and start the new channels' columns at zero. So at the first step the grown decoder draws what
the old one drew from the old channels, while the new channels already carry values it can learn to use
(had both sides started at zero, neither would ever get a gradient).
"""

from __future__ import annotations

import torch
from torch import Tensor

from onedva_codec.model.config import ModelConfig
from onedva_codec.model.network import OneDVA

ENCODER_HEADS = ("encoder.to_structural.weight", "encoder.to_structural.bias", "encoder.to_1d.weight",
                 "encoder.to_1d.bias")
LATENT_READERS = ("decoder.structural_embed.weight", "decoder.structural_to_patches.weight",
                  "decoder.tokens_1d_to_patches.weight", "decoder.tokens_1d_embed.weight")


def grown(old: OneDVA, into: ModelConfig) -> OneDVA:
    """A new model of config `into` holding `old`'s weights as described above."""
    source, old_cfg = old.state_dict(), old.cfg
    if into.latent_channels < old_cfg.latent_channels:
        raise ValueError(f"cannot grow a {old_cfg.latent_channels}-channel latent into {into.latent_channels}")
    model = OneDVA(into)
    state = model.state_dict()
    c = old_cfg.latent_channels
    for name, target in state.items():
        if name not in source:
            continue  # new in this config (the hyperprior): its own initialisation
        value = source[name]
        if name in ENCODER_HEADS:
            state[name] = _head(value[:c] if not old_cfg.rate_distortion else value, target)
        elif name in LATENT_READERS:
            state[name] = torch.cat([value, torch.zeros_like(target[:, c:])], dim=1)
        elif value.shape == target.shape:
            state[name] = value
        else:
            raise ValueError(f"{name}: {tuple(value.shape)} in the old model, {tuple(target.shape)} in {into.name}; "
                             "only the latent's width may grow")
    missing = [n for n in source if n not in state]
    if missing:
        raise ValueError(f"{into.name} has no place for {', '.join(missing[:3])}: not a larger version of "
                         f"{old_cfg.name}")
    model.load_state_dict(state)
    return model


def _head(old_rows: Tensor, target: Tensor) -> Tensor:
    """The old latent's rows first, the fresh initialisation's after them."""
    return torch.cat([old_rows, target[old_rows.shape[0]:]], dim=0)
