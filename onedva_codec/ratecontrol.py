"""How many 1D latent tokens each tile of each chunk keeps.

The unit of allocation is a tile of a chunk ("unit"). Every unit keeps its
structural latent; rate control only chooses how long a head of its 1D latents
it keeps, k in [0, N].

Lengths follow a weight per unit. With `adaptive`, half of the budget is spread
evenly and half in proportion to the unit's motion score, so the same average
buys more tokens where there is motion; without it every unit has weight 1.
A single scale maps weights to lengths, k = clip(round(scale * weight), 0, N),
and is searched for:

* `--quality q`: the mean length is q * N;
* `--bitrate b`: the largest scale whose coded size fits the budget, using each
  unit's exact coded size at lengths on a grid of N / 32 tokens.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import InputError

MOTION_SHARE = 0.5  # share of the 1D budget that follows motion when adaptive
LENGTH_STEPS = 32  # --bitrate chooses lengths among multiples of N / LENGTH_STEPS

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)(?:bps|b/s|bit/s)?\s*$")


def parse_bitrate(text: str) -> float:
    """'300k' -> 300000.0 bits per second; accepts k and M suffixes and a trailing 'bps'."""
    match = _BITRATE.match(text)
    if not match:
        raise InputError(f"cannot read bitrate {text!r}; write it like 300k, 1.5M or 250000")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value <= 0:
        raise InputError("bitrate must be positive")
    return value


def allocation_weights(motion: np.ndarray, adaptive: bool) -> np.ndarray:
    """Per-unit weights with mean 1."""
    mean = float(motion.mean()) if motion.size else 0.0
    if not adaptive or mean <= 0:
        return np.ones_like(motion, dtype=np.float64)
    return (1.0 - MOTION_SHARE) + MOTION_SHARE * motion / mean


def _lengths(scale: float, weights: np.ndarray, max_tokens: int) -> np.ndarray:
    return np.clip(np.round(scale * weights), 0, max_tokens).astype(np.int64)


def _largest_scale(fits, upper: float) -> float:
    """Largest scale in [0, upper] with fits(scale) True, for monotone `fits` (fits(0) True)."""
    if fits(upper):
        return upper
    low, high = 0.0, upper
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def lengths_for_quality(motion: np.ndarray, quality: float, max_tokens: int, adaptive: bool) -> np.ndarray:
    """Lengths whose mean is about quality * max_tokens."""
    if not 0.0 <= quality <= 1.0:
        raise InputError(f"quality must be between 0 and 1, not {quality}")
    weights = allocation_weights(motion, adaptive)
    target = quality * max_tokens
    upper = max_tokens / max(float(weights.min()), 1e-6)
    scale = _largest_scale(lambda s: _lengths(s, weights, max_tokens).mean() <= target + 1e-9, upper)
    return _lengths(scale, weights, max_tokens)


def length_grid(max_tokens: int) -> np.ndarray:
    """The lengths --bitrate chooses among: 0, N/32, 2N/32, ..., N."""
    step = max(1, max_tokens // LENGTH_STEPS)
    grid = np.arange(0, max_tokens + 1, step)
    return grid if grid[-1] == max_tokens else np.append(grid, max_tokens)


def lengths_for_budget(motion: np.ndarray, sizes: np.ndarray, budget: int, max_tokens: int,
                       adaptive: bool) -> np.ndarray:
    """Lengths on `length_grid` whose total coded size is the largest that fits `budget` bytes.

    `sizes[u, j]` is unit u's coded size at length `length_grid(max_tokens)[j]`.
    """
    grid = length_grid(max_tokens)
    weights = allocation_weights(motion, adaptive)
    rows = np.arange(len(sizes))

    def snapped(scale: float) -> np.ndarray:
        wanted = _lengths(scale, weights, max_tokens)
        return np.abs(wanted[:, None] - grid[None]).argmin(axis=1)

    def fits(scale: float) -> bool:
        return int(sizes[rows, snapped(scale)].sum()) <= budget

    if not fits(0.0):
        raise InputError("bitrate too low: even with no 1D latents this video needs "
                         f"{int(sizes[:, 0].sum())} bytes of latents, the budget is {budget}")
    scale = _largest_scale(fits, max_tokens / max(float(weights.min()), 1e-6))
    return grid[snapped(scale)]
