"""Held-out figures of a model at several decoding settings: the numbers a round is judged by.

Training validates at one step count; choosing what a model folder ships with (steps, the refining
sampler's t0) needs the same held-out clips decoded every way, with latents quantized as the codec
quantizes them. Other quantizer steps (0: none) show how much of the loss is the quantizer's and how much
the autoencoder's own, with the rate each step would cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from onedva_codec.bitstream.latent_coding import Quantizer
from onedva_codec.evaluation.metrics import FrameMetrics
from onedva_codec.model.folder import CARD_FILE, load_model
from onedva_codec.model.network import OneDVA, full_tile_geometry
from onedva_codec.model.schedule import DecodingSchedule

from .clips import validation_clips
from .pack import Pack
from .trainer import evaluate, evaluate_rates, evaluate_temporal, load_checkpoint, model_from_checkpoint


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
             clips: int = 16, device: str = "cpu", quant_steps: list[float] | None = None) -> list[dict]:
    """One row per (quantizer step, steps, refine_from): PSNR, SSIM and LPIPS keeping all, half and none of
    the 1D latents, on the pack's first `clips` held-out clips (the ones training validates on).
    quant_steps: quantizer steps in latent units to decode with instead of the model's own (0: the
    latents unquantized); each row then also gives the ideal rate of its symbols (`entropy_bpp`)."""
    model, quantizer = _model_and_quantizer(Path(source))
    if quant_steps and model.cfg.rate_distortion:
        raise ValueError(f"{source} is a v3 model: its rate points are its quantizers (no --quant-step)")
    if quant_steps and quantizer is None:
        raise ValueError(f"{source} has no quantizer (a KL model): other quantizer steps mean nothing for it")
    model = model.to(device).eval()
    pack = Pack(str(data))
    held_out = validation_clips(pack.videos("val"), pack.photos("val"), model.cfg.frames, model.cfg.tile)[:clips]
    metrics = FrameMetrics(device)
    on_gpu = torch.device(device).type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu else contextlib.nullcontext
    # encoded once for every step's rate: the latents do not depend on the step
    means = held_out_means(model, held_out, torch.device(device), autocast) if quant_steps else None
    pixels = held_out.shape[0] * model.cfg.frames * model.cfg.tile * model.cfg.tile
    rows = []
    if model.cfg.rate_distortion:  # every rate point, and the ceiling, at each decoding setting
        for n in steps:
            for t0 in ([1.0] if n == 1 else refine_from):
                results, _ = evaluate_rates(model, held_out, DecodingSchedule(n, t0), torch.device(device), metrics,
                                            autocast)
                rows.append({"steps": n, "refine_from": t0, "rates": results})
        if model.cfg.temporal_prior:
            pairs = validation_clips(pack.videos("val"), pack.photos("val"), 2 * model.cfg.frames,
                                     model.cfg.tile)[:clips]
            rows.append({"temporal": evaluate_temporal(model, pairs, torch.device(device), autocast)})
        return rows
    for step in quant_steps or [None]:
        used = quantizer if step is None else dataclasses.replace(quantizer, step=step) if step > 0 else None
        extra = {} if step is None else {"quant_step": step}
        if step is not None and used is not None:
            extra["entropy_bpp"] = entropy_bpp(means, used, pixels)
        for n in steps:
            # One step ignores t0, so it is decoded once.
            for t0 in ([1.0] if n == 1 else refine_from):
                results, _ = evaluate(model, held_out, DecodingSchedule(n, t0), torch.device(device), metrics,
                                      autocast, quantizer=used)
                rows.append({"steps": n, "refine_from": t0, **extra, **results})
    return rows


@torch.no_grad()
def held_out_means(model: OneDVA, clips: Tensor, device: torch.device, autocast, batch: int = 4) -> Tensor:
    """(n, S + N, C) float posterior means of the clips, every 1D token included."""
    means = []
    for start in range(0, clips.shape[0], batch):
        x0 = clips[start:start + batch].to(device)
        with autocast():
            means.append(model.encode(x0, full_tile_geometry(model.cfg, x0.shape[0], device)).means().float())
    return torch.cat(means)


def entropy_bpp(means: Tensor, quantizer: Quantizer, pixels: int) -> float:
    """Bits per pixel of the symbols of `means` under each channel's own histogram: the rate of an ideal
    coder without context, for comparing quantizer steps (the codec's prior, which also predicts from
    neighbours, spends about a tenth less)."""
    values = quantizer.quantize(means).flatten(0, -2).cpu().numpy()
    bits = 0.0
    for channel in values.T:
        counts = np.unique(channel, return_counts=True)[1]
        bits -= float((counts * np.log2(counts / counts.sum())).sum())
    return bits / pixels


def format_rows(rows: list[dict]) -> str:
    if "rates" in rows[0]:
        lines = ["| steps | t0 | rate point | bpp | PSNR | SSIM | LPIPS |", "|---|---|---|---|---|---|---|"]
        for row in rows:
            for name, r in row.get("rates", {}).items():
                lines.append(f"| {row['steps']} | {row['refine_from']:g} | {name} | {r['bpp']:.4f} | {r['psnr']:.2f} | "
                             f"{r['ssim']:.3f} | {r['lpips']:.3f} |")
        for row in rows:
            if "temporal" in row:  # a temporal prior: the second chunk of each pair, alone and after the first
                t = row["temporal"]
                points = sorted({name.split("-")[0] for name in t}, key=lambda name: int(name[4:]))
                lines += ["", "| rate point | bpp as a key chunk | bpp after the previous chunk | saved |",
                          "|---|---|---|---|"]
                lines += [f"| {p[4:]} | {t[f'{p}-key-bpp']:.4f} | {t[f'{p}-next-bpp']:.4f} | "
                          f"{1 - t[f'{p}-next-bpp'] / t[f'{p}-key-bpp']:.1%} |" for p in points]
                if f"{points[0]}-previous-psnr" in t:  # previous frames: the second chunk drawn alone and after
                    lines += ["", "| rate point | PSNR alone | PSNR after the previous frames | pop alone | "
                              "pop after |", "|---|---|---|---|---|"]
                    lines += [f"| {p[4:]} | {t[f'{p}-alone-psnr']:.2f} | {t[f'{p}-previous-psnr']:.2f} | "
                              f"{t[f'{p}-alone-pop']:.2f} | {t[f'{p}-previous-pop']:.2f} |" for p in points]
        return "\n".join(lines)
    sweep = "quant_step" in rows[0]
    lines = [("| quantizer step | entropy bpp " if sweep else "")
             + "| steps | t0 | PSNR all / half / none | SSIM all | LPIPS all / none |",
             "|---|---|" + ("---|---|" if sweep else "") + "---|---|---|"]
    for row in rows:
        full, half, none = row["full"], row["half"], row["none"]
        lead = ""
        if sweep:
            rate = f"{row['entropy_bpp']:.4f}" if "entropy_bpp" in row else "(unquantized)"
            lead = f"| {row['quant_step']:g} | {rate} "
        lines.append(f"{lead}| {row['steps']} | {row['refine_from']:g} | {full['psnr']:.2f} / {half['psnr']:.2f} / "
                     f"{none['psnr']:.2f} | {full['ssim']:.3f} | {full['lpips']:.3f} / {none['lpips']:.3f} |")
    return "\n".join(lines)
