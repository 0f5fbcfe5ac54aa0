"""A model bound to a device and a batch size: what encoding and decoding run on."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import InputError
from .latent_coding import Quantizer, TileCoder
from .weights import LoadedModel, load_model


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


class Engine:
    """The loaded model on its device, the range coder of its prior, and how many tiles go to the model at once."""

    def __init__(self, weights: str | Path | LoadedModel | None = None, device: str = "auto",
                 batch_size: int | None = None):
        self.device = resolve_device(device)
        self.loaded = weights if isinstance(weights, LoadedModel) else load_model(weights, self.device)
        self.loaded.model.to(self.device)
        self.cfg = self.loaded.card.config
        self.tile_coder = TileCoder(self.loaded.prior)
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 4)
        if self.batch_size < 1:
            raise InputError("batch size must be at least 1")

    def quantizer(self) -> Quantizer:
        """The card's quantizer: what the encoder applies to every latent."""
        card = self.loaded.card
        return Quantizer(card.quant_step, tuple(card.latent_mean), tuple(card.latent_std))

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
