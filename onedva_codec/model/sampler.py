"""Flow-matching sampler: Euler steps towards data (t = 0).

With x_t = (1 - t) x0 + t eps the velocity is dx/dt = eps - x0, so one Euler step
from t to t' < t is x_t' = x_t + (t' - t) v. A single step from t = 1 is the
deterministic stage-1 decoder: x0 = eps - v.

With `refine_from` t0 < 1, more steps refine the one-step estimate instead of
starting over: the first step gives x0^ from pure noise, which is noised back to
t0 with the same noise, x_t0 = (1 - t0) x0^ + t0 eps, and the remaining steps run
from t0 to 0. The latents fix the content at t = 1, so the later steps only have
to add the detail one step cannot draw, and `steps = 1` stays the deterministic
decoder.

The sampler takes a `schedule.DecodingSchedule` whole: steps and refine_from.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedule import DecodingSchedule

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t of shape (B,)) -> v


def _per_sample(t: Tensor | float, like: Tensor) -> Tensor | float:
    """t of shape (B,) as a tensor that broadcasts over a batch like `like`; a float stays a float."""
    return t.view(-1, *[1] * (like.dim() - 1)) if isinstance(t, Tensor) else t


def mix(x0: Tensor, eps: Tensor, t: Tensor | float) -> Tensor:
    """The point x_t = (1 - t) x0 + t eps of the straight path from data (t = 0) to noise (t = 1)."""
    t = _per_sample(t, x0)
    return (1 - t) * x0 + t * eps


def velocity_target(x0: Tensor, eps: Tensor) -> Tensor:
    """The velocity dx_t/dt = eps - x0 of that path, which flow matching learns."""
    return eps - x0


def timesteps(steps: int, start: float = 1.0) -> Tensor:
    """The `steps + 1` times visited, from `start` down to 0, evenly spaced."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return torch.linspace(start, 0.0, steps + 1)


def _euler(velocity: VelocityFn, x: Tensor, ts: list[float]) -> Tensor:
    for t, t_next in zip(ts[:-1], ts[1:]):
        t_batch = torch.full((x.shape[0],), t, device=x.device)
        x = x + (t_next - t) * velocity(x, t_batch).to(x.dtype)
    return x


def sample(velocity: VelocityFn, noise: Tensor, schedule: DecodingSchedule) -> Tensor:
    """Decode from `noise` in `schedule.steps` model calls; see the module's note for refining."""
    steps, start = schedule.steps, schedule.refine_from
    if steps == 1 or start == 1.0:
        return _euler(velocity, noise, timesteps(steps).tolist())
    x0 = _euler(velocity, noise, [1.0, 0.0])
    return _euler(velocity, mix(x0, noise, start), timesteps(steps - 1, start).tolist())
