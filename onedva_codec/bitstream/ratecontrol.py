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
  bound of each unit's coded size at lengths on a grid of N / 32 tokens
  (`size_table`); should the written file still exceed the target, it is
  written again with the budget cut by the excess (`spend`).

A v3 model (rate points, model/hyperprior.py) has a second knob: the rate
point, which sets how finely every latent value is sent. `--quality q` moves
both along one ladder (`ladder`): the rate point q of the way from the lowest to
the highest, and a mean 1D length from LENGTH_FLOOR of N at q = 0 to all of it at
q = 1, spread by motion as above. `--bitrate b` searches q on that ladder against
an estimate of the file's size (the ideal code lengths under the model's float
entropy model), writes the file, and writes it again with the budget cut by the
excess should it not fit (`spend_ladder`).

Everything about rate lives here: reading a bitrate, checking the options,
the size table, the target and the plan; the encoder asks `spend` (or
`spend_ladder`) once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError
from .container import RATE_UNITS

MOTION_SHARE = 0.5  # share of the 1D budget that follows motion when adaptive
LENGTH_STEPS = 32  # --bitrate chooses lengths among multiples of N / LENGTH_STEPS
DEFAULT_QUALITY = 0.5
WRITES = 3  # --bitrate: the first write fits unless the size bound fails; then two more at most
LENGTH_FLOOR = 0.5  # v3: the mean share of 1D tokens kept at --quality 0
LADDER_STEPS = 12  # v3 --bitrate: bisection steps on the ladder (q to 1/4096), each an estimate
CLOSE_ENOUGH = 0.02  # v3 --bitrate: a file this close under the target is kept
_BITRATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)(?:bps|b/s|bit/s)?\s*$")


def parse_bitrate(text: str) -> float:
    """'300k' -> 300000.0 bits per second; accepts k and M suffixes and a trailing 'bps'."""
    match = _BITRATE.match(text)
    if not match:
        raise InputError(f"cannot read bitrate {text!r}; write it like 300k, 1.5M or 250000")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]


@dataclass(frozen=True)
class RateOptions:
    """How to spend bits: a quality in [0, 1] (mean share of 1D tokens kept; DEFAULT_QUALITY if neither
    is given) or a bitrate in bits/s, not both; `adaptive` lets the share follow each unit's motion."""

    quality: float | None = None
    bitrate: float | None = None
    adaptive: bool = True

    def __post_init__(self) -> None:
        if self.quality is not None and self.bitrate is not None:
            raise InputError("give --quality or --bitrate, not both")
        if self.quality is not None and not 0.0 <= self.quality <= 1.0:
            raise InputError(f"quality must be between 0 and 1, not {self.quality}")
        if self.bitrate is not None and not self.bitrate > 0:
            raise InputError("bitrate must be positive")
        if self.quality is None and self.bitrate is None:
            object.__setattr__(self, "quality", DEFAULT_QUALITY)

    @classmethod
    def from_text(cls, quality: float | None = None, bitrate: str | None = None, adaptive: bool = True
                  ) -> RateOptions:
        """Options as a user writes them (`--bitrate 300k`)."""
        return cls(quality, None if bitrate is None else parse_bitrate(bitrate), adaptive)

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


def _scale_bound(weights: np.ndarray, max_tokens: int) -> float:
    """A scale past which every unit keeps all its tokens."""
    return max_tokens / max(float(weights.min()), 1e-6)


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
    scale = _largest_scale(lambda s: _lengths(s, weights, max_tokens).mean() <= target + 1e-9,
                           _scale_bound(weights, max_tokens))
    return _lengths(scale, weights, max_tokens)


def length_grid(max_tokens: int) -> np.ndarray:
    """The lengths --bitrate chooses among: 0, N/32, 2N/32, ..., N."""
    step = max(1, max_tokens // LENGTH_STEPS)
    grid = np.arange(0, max_tokens + 1, step)
    return grid if grid[-1] == max_tokens else np.append(grid, max_tokens)


def size_table(token_bits: np.ndarray, structural_tokens: int, max_tokens: int) -> np.ndarray:
    """(units, len(length_grid)) bounds of each unit's coded bytes at each length of the grid, from its
    tokens' ideal bits (units, tokens) under the prior."""
    from .latent_coding import coded_size_bound  # here: the command line reads RateOptions before torch loads
    cumulative = np.cumsum(token_bits, axis=1)
    return coded_size_bound(cumulative[:, structural_tokens - 1 + length_grid(max_tokens)])


def target_bytes(rate: RateOptions, duration: float) -> int:
    """The most bytes a file of `duration` seconds may take at `rate.bitrate`."""
    return int(rate.bitrate * duration / 8)


def lengths_for_bitrate(motion: np.ndarray, sizes: np.ndarray, rate: RateOptions, duration: float,
                        overhead: int, max_tokens: int) -> tuple[np.ndarray, str | None]:
    """Lengths on `length_grid` whose file fits `rate.bitrate` over `duration` seconds, as large as fits.

    `sizes[u, j]` bounds unit u's coded bytes at length `length_grid(max_tokens)[j]` (`size_table`);
    `overhead` is every byte of the file besides the units' data (container, audio). Returns the lengths
    and, when even every token fits with room to spare, a note that says so.
    """
    budget = target_bytes(rate, duration) - overhead
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
    lengths = grid[snapped(_largest_scale(fits, _scale_bound(weights, max_tokens)))]
    note = None
    if (lengths == max_tokens).all():
        ceiling = (int(sizes[:, -1].sum()) + overhead) * 8 / duration
        note = f"the target exceeds what full quality needs; the file is {ceiling / 1000:.1f} kbit/s"
    return lengths, note


def spend(rate: RateOptions, motion: np.ndarray, sizes: np.ndarray | None, duration: float, overhead: int,
          max_tokens: int, write: Callable[[np.ndarray], int]) -> tuple[np.ndarray, int, str | None]:
    """Choose every unit's length and write the file with them: `write(lengths)` writes it (from its
    start each time) and returns its size. Returns the lengths, the size and a note for the user, if any.

    `--quality`: one write. `--bitrate`: the sizes (`size_table`) bound each unit's coded size from above,
    so the first write fits; should one not, the file is written again with the budget cut by the excess.
    """
    if rate.bitrate is None:
        lengths = lengths_for_quality(motion, rate.quality, max_tokens, rate.adaptive)
        return lengths, write(lengths), None
    target, excess = target_bytes(rate, duration), 0
    for _ in range(WRITES):
        lengths, note = lengths_for_bitrate(motion, sizes, rate, duration, overhead + excess, max_tokens)
        written = write(lengths)
        if written <= target:
            break
        excess += written - target
    return lengths, written, note


def ladder(quality: float, max_rate: float, table: list[list[float]] | None = None) -> tuple[float, float]:
    """A v3 model's (rate point, mean share of 1D tokens) at `quality`, the rate point on the file's grid of
    1 / RATE_UNITS. `table`: the model's measured ladder (its card's), rows for qualities evenly spaced
    from 0 to 1, interpolated linearly; without one, the rate point goes from 0 to `max_rate` and the share
    from LENGTH_FLOOR to 1."""
    if table:
        position = quality * (len(table) - 1)
        below = min(int(position), len(table) - 2)
        frac = position - below
        point, share = ((1 - frac) * a + frac * b for a, b in zip(table[below], table[below + 1]))
    else:
        point, share = quality * max_rate, LENGTH_FLOOR + (1 - LENGTH_FLOOR) * quality
    return round(point * RATE_UNITS) / RATE_UNITS, share


def spend_ladder(rate: RateOptions, motion: np.ndarray, duration: float, max_rate: float, max_tokens: int,
                 write: Callable[[float, np.ndarray], int], estimate: Callable[[float, np.ndarray], int],
                 table: list[list[float]] | None = None) -> tuple[float, np.ndarray, int, str | None]:
    """A v3 model's `spend`: choose the rate point and every unit's length on the ladder and write the file
    with them. `write(rate_point, lengths)` writes it (from its start each time) and returns its size;
    `estimate(rate_point, lengths)` says about how large it would be without writing it (the ideal code
    lengths under the model's float entropy model); `table`, the model's measured ladder (`ladder`).
    Returns the rate point, the lengths, the size and a note for the user, if any.

    `--bitrate`: the largest quality on the ladder whose estimate fits (bisection, LADDER_STEPS), written;
    unless the file lands within CLOSE_ENOUGH under the target, the estimates are scaled by what the file
    weighed against its estimate and the search runs again (WRITES writes at most; the largest that fits
    is kept, or the last one should none fit)."""
    def plan(quality: float) -> tuple[float, np.ndarray]:
        point, share = ladder(quality, max_rate, table)
        return point, lengths_for_quality(motion, share, max_tokens, rate.adaptive)

    if rate.bitrate is None:
        point, lengths = plan(rate.quality)
        return point, lengths, write(point, lengths), None
    target = target_bytes(rate, duration)
    top = plan(1.0)
    if estimate(*top) <= target:
        written = write(*top)
        if written <= target:
            note = f"the target exceeds what full quality needs; the file is {written * 8 / duration / 1000:.1f} kbit/s"
            return (*top, written, note)
    scale, best, tried = 1.0, None, None  # scale: what the file weighed against its estimate, last time
    for _ in range(WRITES):
        low, high = 0.0, 1.0
        low_estimate = estimate(*plan(low))
        if low_estimate * scale <= target:
            for _ in range(LADDER_STEPS):
                middle = 0.5 * (low + high)
                middle_estimate = estimate(*plan(middle))
                if middle_estimate * scale <= target:
                    low, low_estimate = middle, middle_estimate
                else:
                    high = middle
        point, lengths = plan(low)
        written = write(point, lengths)
        tried = (point, lengths, written)
        if written <= target and (best is None or written > best[2]):
            best = tried
        if written <= target and written >= (1 - CLOSE_ENOUGH) * target:
            break
        if written > target and low == 0.0:
            raise InputError(f"bitrate too low: this video needs at least {written * 8 / duration / 1000:.1f} "
                             "kbit/s (the lowest quality)")
        scale = written / max(low_estimate, 1)
    if best is None:  # as `spend`: the last try stands, just over the target
        return (*tried, None)
    if best is not tried:  # the file on disk is another try: write the best that fits again
        best = (*best[:2], write(*best[:2]))
    return (*best, None)
