"""The decoding schedule: how many model calls a chunk gets and where refining starts.

It is the whole of how a file is decoded: a model card holds its default (`ModelCard.sampling`),
a caller may ask for other steps (`ModelCard.schedule`), and the sampler takes it as it is. This
module imports nothing heavy, so that the command line can check `--steps` before torch loads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError

MAX_DECODING_STEPS = 100  # past a few dozen, more steps change nothing but the time spent


@dataclass(frozen=True)
class DecodingSchedule:
    """Model calls per chunk (`steps`) and where multi-step decoding starts refining (`refine_from`,
    t0 in (0, 1]; 1: every step starts over from noise). One step is the deterministic decoder."""

    steps: int = 1
    refine_from: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= MAX_DECODING_STEPS:
            raise InputError(f"steps must be 1 to {MAX_DECODING_STEPS}, not {self.steps}")
        if not 0.0 < self.refine_from <= 1.0:
            raise InputError(f"refine_from must be in (0, 1], not {self.refine_from}")

    def with_steps(self, steps: int | None) -> DecodingSchedule:
        """This schedule with the caller's steps, if any."""
        return self if steps is None else dataclasses.replace(self, steps=steps)
