"""The one pixel convention: the model works in [-1, 1], video is 8-bit.

Layouts (channels first or last) stay with the callers; only the value mapping lives here.
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_model_range(pixels: Tensor) -> Tensor:
    """uint8 values 0..255 -> float in [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


def to_8bit(values: Tensor) -> Tensor:
    """Float in [-1, 1] -> uint8, rounded to the nearest level."""
    return ((values.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
