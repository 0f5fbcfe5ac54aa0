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
* `--bitrate b`: the largest scale whose coded size fits the budget, using a
  bound of each unit's coded size at lengths on a grid of N / 32 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MOTION_SHARE = 0.5  # share of the 1D budget that follows motion when adaptive
LENGTH_STEPS = 32  # --bitrate chooses lengths among multiples of N / LENGTH_STEPS


@dataclass(frozen=True)
class RateOptions:
    """How to spend bits: a quality in [0, 1] (mean share of 1D tokens kept; 0.5 if neither is given)
    or a bitrate in bits/s, not both; `adaptive` lets the share follow each unit's motion."""

    quality: float | None = None
    bitrate: float | None = None
    adaptive: bool = True

    def __post_init__(self) -> None:
        if self.quality is not None and self.bitrate is not None:
            raise InputError("give a quality or a bitrate, not both")
        if self.quality is not None and not 0.0 <= self.quality <= 1.0:
            raise InputError(f"quality must be between 0 and 1, not {self.quality}")
        if self.bitrate is not None and not self.bitrate > 0:
            raise InputError("bitrate must be positive")
        if self.quality is None and self.bitrate is None:
            object.__setattr__(self, "quality", 0.5)

    def describe(self) -> dict:
        if self.bitrate is not None:
            return {"mode": "bitrate", "bitrate": float(self.bitrate), "adaptive": self.adaptive}
        return {"mode": "quality", "quality": float(self.quality), "adaptive": self.adaptive}


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


def lengths_for_bitrate(motion: np.ndarray, sizes: np.ndarray, rate: RateOptions, duration: float,
                        overhead: int, max_tokens: int) -> tuple[np.ndarray, str | None]:
    """Lengths on `length_grid` whose file fits `rate.bitrate` over `duration` seconds, as large as fits.

    `sizes[u, j]` bounds unit u's coded bytes at length `length_grid(max_tokens)[j]`; `overhead` is every
    byte of the file besides the units' data (container, audio). Returns the lengths and, when even
    every token fits with room to spare, a note that says so.
    """
    target = rate.bitrate * duration / 8
    budget = int(target) - overhead
    if budget <= 0:
        raise InputError(f"bitrate too low: the container and audio alone need "
                         f"{overhead * 8 / duration / 1000:.1f} kbit/s")
    grid = length_grid(max_tokens)
    weights = allocation_weights(motion, rate.adaptive)
    rows = np.arange(len(sizes))

    def snapped(scale: float) -> np.ndarray:
        wanted = _lengths(scale, weights, max_tokens)
        return np.abs(wanted[:, None] - grid[None]).argmin(axis=1)

    def fits(scale: float) -> bool:
        return int(sizes[rows, snapped(scale)].sum()) <= budget

    if not fits(0.0):
        floor = (int(sizes[:, 0].sum()) + overhead) * 8 / duration
        raise InputError(f"bitrate too low: this video needs at least {floor / 1000:.1f} kbit/s "
                         "(structural latents only)")
    lengths = grid[snapped(_largest_scale(fits, max_tokens / max(float(weights.min()), 1e-6)))]
    note = None
    if (lengths == max_tokens).all():
        ceiling = (int(sizes[:, -1].sum()) + overhead) * 8 / duration
        note = f"the target exceeds what full quality needs; the file is {ceiling / 1000:.1f} kbit/s"
    return lengths, note
