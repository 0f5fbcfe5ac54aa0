"""Turn a training checkpoint into a model folder the codec loads (`odva --weights DIR`), and fit priors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from onedva_codec.bitstream.hyperprior_coding import HyperpriorTables
from onedva_codec.bitstream.prior import EntropyPrior, fit_prior, group_zero_references
from onedva_codec.model.folder import (CARD_FILE, CARD_VERSION, ModelCard, load_model, load_network, save_model,
                                       save_prior)
from onedva_codec.model.network import OneDVA, token_homes
from onedva_codec.model.schedule import DecodingSchedule

from .pack import Pack
from .trainer import latent_means, latent_statistics, load_checkpoint, model_from_checkpoint


def _training_latents(model: OneDVA, data: str, seed: int, photo_share: float, batch: int) -> Tensor:
    pack = Pack(data)
    return latent_means(model, pack.videos("train"), pack.photos("train"), seed, photo_share, batch,
                        torch.device("cpu"))


def fitted_prior(latents: Tensor, card: ModelCard) -> tuple[EntropyPrior, dict]:
    """The prior of the symbols the codec makes of `latents` with the card's quantizer; 1D tokens with
    homes may take the same home's first-group token as a context."""
    cfg = card.config
    quantizer = card.quantizer()
    reference = None
    if cfg.tokens_1d != "queries":
        group, position = token_homes(cfg)
        reference = group_zero_references(group.numpy(), position.numpy(), cfg.structural_tokens)
    return fit_prior(quantizer.quantize(latents).numpy(), cfg.structural_tokens, reference)


def export(checkpoint_path: str | Path, out: str | Path, data: str | None = None, batch: int = 8,
           weights_format: str = "bf16", sampling: dict | None = None) -> ModelCard:
    """EMA weights in bf16, plus a card with the latent and motion statistics and the training history,
    and an entropy prior fitted to the quantized latents of training clips.

    Latent statistics come from the checkpoint when its stage fixed them (ldm, decoder-ft), so that the
    codec quantizes exactly as the decoder was fine-tuned to expect; otherwise they are measured on the
    same training clips of the pack (`data`, by default the run's own). `sampling` ({"default_steps",
    "refine_from"}) sets how the codec decodes by default, chosen by `odva-train validate`; without it,
    8 steps after a stochastic stage and 1 after stage 1 alone, from the run's refine_from.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    cfg = checkpoint["config"]
    model = model_from_checkpoint(checkpoint).eval()
    latents = _training_latents(model, data or cfg["data"], cfg["seed"], cfg["photo_share"], batch)
    if model.cfg.rate_distortion or cfg.get("latents", "kl") == "quantized":  # trained for rounding in latent units
        channels = model.cfg.latent_channels
        stats = {"mean": [0.0] * channels, "std": [1.0] * channels}
    else:
        stats = checkpoint.get("latent_stats") or latent_statistics(latents).to_dict()
    history = checkpoint.get("history", [])
    stochastic = any(h["stage"] != "stage1" for h in history) or cfg["stage"] != "stage1"
    motion = checkpoint["motion"]
    card = ModelCard(
        config=model.cfg, latent_mean=stats["mean"], latent_std=stats["std"],
        motion_mu=motion["mu"], motion_sigma=motion["sigma"], quant_step=cfg["quant_step"],
        sampling=DecodingSchedule(8 if stochastic else 1, cfg.get("refine_from", 1.0)),
        weights_format=weights_format,
        training={"stages": history, "exported_from": str(checkpoint_path), "step": checkpoint["step"]},
    )
    _set_sampling(card, sampling)
    if model.cfg.rate_distortion:
        prior, card.prior_fit = shipped_hyperprior(model, latents)
    else:
        prior, card.prior_fit = fitted_prior(latents, card)
    return save_model(model, card, prior, out)


def shipped_hyperprior(model: OneDVA, latents: Tensor) -> tuple[HyperpriorTables, dict]:
    """A v3 model's entropy model in integer arithmetic, its hidden activations scaled to the largest
    the training clips' latents (n, S + N, C) give at any rate point."""
    s = model.cfg.structural_tokens
    peak = model.hyperprior.hidden_peak(latents[:, :s], latents[:, s:], model.decoder.home_slot)
    tables = model.hyperprior.shipped_tables(peak)
    return tables, {"kind": "hyperprior", "clips": len(latents), "hidden_peak": round(peak, 4),
                    "activation_exponent": tables.decoder.activation_exponent}


def _set_sampling(card: ModelCard, sampling: dict | None) -> None:
    """The card's decoding schedule with what `sampling` sets ({"default_steps", "refine_from"}, None: kept)."""
    chosen = {key: value for key, value in (sampling or {}).items() if value is not None}
    card.sampling = DecodingSchedule(chosen.get("default_steps", card.sampling.steps),
                                     chosen.get("refine_from", card.sampling.refine_from))


def reformat(folder: str | Path, out: str | Path, weights_format: str, sampling: dict | None = None) -> ModelCard:
    """A model folder's weights re-written in another format (bf16 -> int8, say), card and prior kept
    (but for `sampling`, as in `export`): how a round's float export becomes the shipped file without
    the checkpoint."""
    loaded = load_model(folder)
    card = loaded.card
    card.training = {**card.training, "reformatted_from": {"weights_format": card.weights_format,
                                                           "weights_sha256": card.weights_sha256}}
    card.weights_format = weights_format
    _set_sampling(card, sampling)
    return save_model(loaded.model, card, loaded.prior, out)


def refit_prior(folder: str | Path, data: str, seed: int = 0, batch: int = 8, quant_step: float | None = None
                ) -> ModelCard:
    """Fit a new prior for an exported model folder; its weights stay as they are. With quant_step the
    card's quantizer step changes first (the same network, coded coarser or finer), and the prior is
    fitted to the symbols of that step.

    A folder with a version-1 card (from before priors) gets its first prior and a current card.
    """
    folder = Path(folder)
    values = json.loads((folder / CARD_FILE).read_text())
    if values.get("format_version") == 1:  # the same card, with no prior yet
        values.update(format_version=CARD_VERSION, entropy_prior={"sha256": ""})
    card = ModelCard.from_json(values)
    if quant_step is not None:
        card.quant_step = quant_step
    model = load_network(folder, card)
    photo_share = 0.5  # as training draws its clips
    prior, card.prior_fit = fitted_prior(_training_latents(model, data, seed, photo_share, batch), card)
    return save_prior(prior, card, folder)
