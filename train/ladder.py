"""A v3 model's `--quality` ladder, measured: its best rate-distortion curve over rate point and 1D length.

A v3 file has two knobs per tile, the rate point (how finely each latent value is sent) and the 1D length
(how many 1D tokens are sent). `--quality` moves both along one ladder. This measures, on held-out clips,
the bits (the ideal code length under the model's entropy model, side information included) and the
one-step PSNR at a grid of rate points and shares of 1D tokens, keeps the upper convex hull of those
points in (bpp, PSNR), and writes LADDER_ROWS points along it, log-spaced in bpp, into the model card
(`rate_ladder`): quality 0 is the hull's cheapest point and quality 1 its best.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from onedva_codec.evaluation.metrics import psnr
from onedva_codec.model.folder import CARD_FILE, load_model
from onedva_codec.model.network import Latents, OneDVA
from onedva_codec.model.schedule import DecodingSchedule

from .clips import validation_clips
from .pack import Pack
from .trainer import decode_held_out

RATE_STEP = 0.5  # rate points measured: 0, 0.5, 1, ...
SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)  # shares of the 1D tokens measured
LADDER_ROWS = 11


@dataclass(frozen=True)
class Point:
    rate: float
    share: float
    bpp: float
    psnr: float


@torch.no_grad()
def measure(model: OneDVA, clips: torch.Tensor, device: torch.device, autocast=contextlib.nullcontext,
            batch: int = 4) -> list[Point]:
    """bpp and one-step PSNR of the clips at every (rate point, share) of the grid."""
    cfg = model.cfg
    rates = np.arange(0, cfg.rate_points - 1 + 1e-9, RATE_STEP)
    grid = {f"{float(r)}:{s}": (float(r), s) for r in rates for s in SHARES}

    def cases(posterior, b: int):
        for name, (rate, share) in grid.items():
            keep = Latents.keep_mask(torch.full((b,), round(share * cfg.max_1d_tokens), device=device),
                                     cfg.max_1d_tokens)
            latents, bits, _ = model.code_latents(posterior, keep, torch.full((b,), rate, device=device))
            yield name, latents, bits

    def mean_psnr(reference: torch.Tensor, decoded: torch.Tensor) -> dict[str, float]:
        return {"psnr": psnr(reference, decoded).mean().item()}

    results, _, bits = decode_held_out(model, clips, DecodingSchedule(1), device, mean_psnr, autocast, batch, cases,
                                       kept_clips=0)
    pixels = clips.shape[0] * clips.shape[2] * clips.shape[3] * clips.shape[4]
    return [Point(rate, share, bits[name] / pixels, results[name]["psnr"]) for name, (rate, share) in grid.items()]


def best_curve(points: list[Point]) -> list[Point]:
    """The upper convex hull of the points in (bpp, PSNR), from the cheapest point to the best one: every
    point on it buys more PSNR per bit than any mix of the others."""
    hull: list[Point] = []
    for p in sorted(points, key=lambda p: (p.bpp, -p.psnr)):
        if hull and p.psnr <= hull[-1].psnr:
            continue  # costs more for no more quality
        while len(hull) >= 2 and _turns_up(hull[-2], hull[-1], p):
            hull.pop()
        hull.append(p)
    return hull


def _turns_up(a: Point, b: Point, c: Point) -> bool:
    """Whether b lies on or below the chord from a to c."""
    return (b.psnr - a.psnr) * (c.bpp - a.bpp) <= (c.psnr - a.psnr) * (b.bpp - a.bpp)


def ladder_rows(curve: list[Point], rows: int = LADDER_ROWS) -> list[list[float]]:
    """`rows` [rate point, share] pairs along the curve, log-spaced in bpp from its first point to its last."""
    if len(curve) == 1:
        return [[curve[0].rate, curve[0].share]] * 2
    low, high = math.log(curve[0].bpp), math.log(curve[-1].bpp)
    out = []
    for i in range(rows):
        target = math.exp(low + (high - low) * i / (rows - 1))
        j = min(max(k for k in range(len(curve)) if curve[k].bpp <= target + 1e-12), len(curve) - 2)
        a, b = curve[j], curve[j + 1]
        frac = min(max((target - a.bpp) / (b.bpp - a.bpp), 0.0), 1.0)
        out.append([round(a.rate + frac * (b.rate - a.rate), 4), round(a.share + frac * (b.share - a.share), 4)])
    return out


def measure_ladder(folder: str | Path, data: str | Path, clips: int = 16, device: str = "cpu"
                   ) -> tuple[list[Point], list[Point], list[list[float]]]:
    """Measure a v3 model folder's grid, its best curve and ladder, and write the ladder into its card."""
    folder = Path(folder)
    loaded = load_model(folder, device)
    if not loaded.cfg.rate_distortion:
        raise ValueError(f"{folder} is not a v3 model: its --quality ladder is the 1D length alone")
    pack = Pack(str(data))
    held_out = validation_clips(pack.videos("val"), pack.photos("val"), loaded.cfg.frames, loaded.cfg.tile)[:clips]
    on_gpu = torch.device(device).type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu else contextlib.nullcontext
    points = measure(loaded.model, held_out, torch.device(device), autocast)
    curve = best_curve(points)
    loaded.card.rate_ladder = ladder_rows(curve)
    (folder / CARD_FILE).write_text(json.dumps(loaded.card.to_json(), indent=2) + "\n")
    return points, curve, loaded.card.rate_ladder
