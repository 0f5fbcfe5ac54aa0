"""Turn a training checkpoint into a model folder the codec loads (`odva --weights DIR`)."""

from __future__ import annotations

from pathlib import Path

import torch

from onedva_codec.weights import ModelCard, save_model

from .pack import Pack
from .trainer import latent_statistics, load_checkpoint, model_from_checkpoint


def export(checkpoint_path: str | Path, out: str | Path, data: str | None = None, batch: int = 8) -> ModelCard:
    """EMA weights in bf16, plus a card with the latent and motion statistics and the training history.

    Latent statistics come from the checkpoint when its stage fixed them (ldm, decoder-ft), so that the
    codec quantizes exactly as the decoder was fine-tuned to expect; otherwise they are measured on
    training clips of the pack (`data`, by default the run's own).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    cfg = checkpoint["config"]
    model = model_from_checkpoint(checkpoint).eval()
    stats = checkpoint.get("latent_stats")
    if stats is None:
        pack = Pack(data or cfg["data"])
        stats = latent_statistics(model, pack.videos("train"), pack.photos("train"), cfg["seed"],
                                  cfg["photo_share"], batch, torch.device("cpu")).to_dict()
    history = checkpoint.get("history", [])
    stochastic = any(h["stage"] != "stage1" for h in history) or cfg["stage"] != "stage1"
    motion = checkpoint["motion"]
    card = ModelCard(
        config=model.cfg, latent_mean=stats["mean"], latent_std=stats["std"],
        motion_mu=motion["mu"], motion_sigma=motion["sigma"], quant_step=cfg["quant_step"],
        default_steps=8 if stochastic else 1,
        training={"stages": history, "exported_from": str(checkpoint_path), "step": checkpoint["step"]},
    )
    return save_model(model, card, out)
