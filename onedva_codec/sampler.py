"""Flow-matching sampler: Euler steps from pure noise (t = 1) to data (t = 0).

With x_t = (1 - t) x0 + t eps the velocity is dx/dt = eps - x0, so one Euler step
from t to t' < t is x_t' = x_t + (t' - t) v. A single step from t = 1 is the
deterministic stage-1 decoder: x0 = eps - v.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t of shape (B,)) -> v


def timesteps(steps: int) -> Tensor:
    """The `steps + 1` times visited, from 1 down to 0, evenly spaced."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    return torch.linspace(1.0, 0.0, steps + 1)


def euler_sample(velocity: VelocityFn, noise: Tensor, steps: int) -> Tensor:
    x = noise
    ts = timesteps(steps).tolist()
    for t, t_next in zip(ts[:-1], ts[1:]):
        t_batch = torch.full((x.shape[0],), t, device=x.device)
        x = x + (t_next - t) * velocity(x, t_batch).to(x.dtype)
    return x
