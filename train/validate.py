"""Held-out figures of a model at several decoding settings: the numbers a round is judged by.

Training validates at one step count; choosing what a model folder ships with (steps, the refining
sampler's t0) needs the same held-out clips decoded every way, with latents quantized as the codec
quantizes them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from onedva_codec.latent_coding import Quantizer
from onedva_codec.metrics import FrameMetrics
from onedva_codec.model import OneDVA
from onedva_codec.weights import CARD_FILE, load_model

from .clips import validation_clips
from .pack import Pack
from .trainer import evaluate, load_checkpoint, model_from_checkpoint


def _model_and_quantizer(source: Path) -> tuple[OneDVA, Quantizer | None]:
    """A model folder decodes as the codec would; a run's checkpoint as its own validation does."""
    if (source / CARD_FILE).is_file():
        loaded = load_model(source)
        return loaded.model, loaded.card.quantizer()
    checkpoint = load_checkpoint(source)
    model = model_from_checkpoint(checkpoint)
    cfg = checkpoint["config"]
    quantizer = None
    if cfg.get("latents", "kl") == "quantized":
        quantizer = Quantizer.in_latent_units(cfg["quant_step"], model.cfg.latent_channels)
    return model, quantizer


def validate(source: str | Path, data: str | Path, steps: list[int], refine_from: list[float],
             clips: int = 16, device: str = "cpu") -> list[dict]:
    """One row per (steps, refine_from): PSNR, SSIM and LPIPS keeping all, half and none of the 1D
    latents, on the pack's first `clips` held-out clips (the ones training validates on)."""
    model, quantizer = _model_and_quantizer(Path(source))
    model = model.to(device).eval()
    pack = Pack(str(data))
    held_out = validation_clips(pack.videos("val"), pack.photos("val"), model.cfg.frames, model.cfg.tile)[:clips]
    metrics = FrameMetrics(device)
    on_gpu = torch.device(device).type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu else contextlib.nullcontext
    rows = []
    for n in steps:
        # One step ignores t0, so it is decoded once.
        for t0 in ([1.0] if n == 1 else refine_from):
            results, _ = evaluate(model, held_out, n, torch.device(device), metrics, autocast,
                                  quantizer=quantizer, refine_from=t0)
            rows.append({"steps": n, "refine_from": t0, **results})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| steps | t0 | PSNR all / half / none | SSIM all | LPIPS all / none |", "|---|---|---|---|---|"]
    for row in rows:
        full, half, none = row["full"], row["half"], row["none"]
        lines.append(f"| {row['steps']} | {row['refine_from']:g} | {full['psnr']:.2f} / {half['psnr']:.2f} / "
                     f"{none['psnr']:.2f} | {full['ssim']:.3f} | {full['lpips']:.3f} / {none['lpips']:.3f} |")
    return "\n".join(lines)
